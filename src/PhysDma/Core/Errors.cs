namespace PhysDma.Core;

/// <summary>
/// A DMA layer did what would crash or corrupt a real kernel (for example asked for a kernel virtual
/// address of MMIO). Tests treat it as a bug in the layer that asked.
/// </summary>
internal sealed class ModelViolation(string message) : Exception(message);

/// <summary>The kernel would BUG() here (an oops): a scenario run ends with the result so far.</summary>
internal sealed class KernelBug(string message) : Exception(message);
