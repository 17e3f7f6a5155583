using System.Diagnostics;
using System.Globalization;

namespace PhysDma.Benchmarks;

/// <summary>
/// How long this host takes to pass one cache line from one core to another and back: two threads take turns
/// writing one 64-byte line, each waiting to see the other's write. Two CPUs that map for one device share some
/// lines as the kernel's do (an IOVA the other CPU freed comes back through the IOVA caches' depot with its PTE
/// line in the other core's cache), so their scaling depends on this figure as much as on the model. On the
/// Firecracker VMs this was measured on, it is about 80–170 ns when the host runs the two vCPUs near each other
/// and about 400 ns when it runs them far apart, and the host moves between the two while a run is going.
/// </summary>
internal static class HostLineProbe
{
    private const int Rounds = 100_000;

    /// <summary>Nanoseconds per round trip: the median of <paramref name="samples"/> runs of <see cref="Rounds"/> round trips each.</summary>
    public static double RoundTripNs(int samples = 5)
    {
        // The word sits in the array's third line: the first holds the length, which nothing here writes.
        var line = GC.AllocateArray<long>(24, pinned: true);
        var results = new double[samples];
        for (var s = 0; s < samples; s++)
        {
            Volatile.Write(ref line[16], 0);
            var echo = new Thread(() =>
            {
                for (long i = 1; i <= Rounds; i++)
                {
                    while (Volatile.Read(ref line[16]) != (2 * i) - 1)
                    {
                    }
                    Volatile.Write(ref line[16], 2 * i);
                }
            });
            echo.Start();
            var sw = Stopwatch.StartNew();
            for (long i = 1; i <= Rounds; i++)
            {
                Volatile.Write(ref line[16], (2 * i) - 1);
                while (Volatile.Read(ref line[16]) != 2 * i)
                {
                }
            }
            results[s] = sw.Elapsed.TotalNanoseconds / Rounds;
            echo.Join();
        }
        Array.Sort(results);
        return results[samples / 2];
    }

    /// <summary>
    /// The probe as one line of output, for a log that a reader compares scaling figures against. With one CPU
    /// there is nothing to measure: the two threads would take turns by time slice, and the probe would run for
    /// minutes.
    /// </summary>
    public static string Describe(string when) => Environment.ProcessorCount < 2
        ? "// host: one CPU, so no cache line round trip between two threads to measure"
        : string.Create(CultureInfo.InvariantCulture,
            $"// host: a cache line's round trip between two threads {when}: {RoundTripNs():F0} ns (near: about 80–170, far: about 400)");
}
