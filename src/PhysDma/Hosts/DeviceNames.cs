namespace PhysDma.Hosts;

/// <summary>Scenario-friendly device names by PCI class (<c>nic0</c>, <c>nvme0</c>, <c>gpu0</c>, …).</summary>
internal static class DeviceNames
{
    /// <summary>The name stem for a 24-bit class code.</summary>
    public static string Stem(uint? cls, string? driver)
    {
        if (cls is not { } c)
        {
            return driver switch
            {
                "igb" or "e1000e" or "ixgbe" or "i40e" or "ice" or "mlx5_core" or "r8169" or "tg3" or "bnxt_en" or "virtio-net" => "nic",
                "nvme" => "nvme",
                "ahci" => "sata",
                "hpsa" or "megaraid_sas" or "mpt3sas" => "raid",
                "xhci_hcd" or "ehci-pci" => "usb",
                "snd_hda_intel" or "ICH HD audio" => "audio",
                "amdgpu" or "i915" or "nouveau" or "nvidia" or "xe" => "gpu",
                _ => "dev",
            };
        }
        var baseSub = c >> 8;
        return baseSub switch
        {
            0x0108 when (c & 0xff) == 0x02 => "nvme",
            0x0106 => "sata",
            0x0104 => "raid",
            0x0100 or 0x0107 => "scsi",
            0x0108 => "nvm",
            0x0280 => "wifi",
            0x0c03 when (c & 0xff) == 0x40 => "tbt",
            0x0c03 => "usb",
            0x0c05 => "smbus",
            0x0600 => "host",
            0x0601 => "isa",
            0x0806 => "iommu",
            0x0880 => "sysdev",
            0x0403 or 0x0401 => "audio",
            0x0b40 => "coproc",
            0x1200 or 0x1201 => "accel",
            0x1180 => "dsp",
            0x1080 => "crypto",
            0x0500 => "sram",
            0x0780 => "comm",
            0x0c80 => "serial",
            _ => (baseSub >> 8) switch
            {
                0x01 => "storage",
                0x02 => "nic",
                0x03 => "gpu",
                0x04 => "media",
                0x06 => "bridge",
                0x07 => "comm",
                0x08 => "sysdev",
                0x0c => "serial",
                0x11 => "dsp",
                0x12 => "accel",
                0x13 => "npu",
                _ => "dev",
            },
        };
    }

    /// <summary>A class code guessed from an lspci name when the dump shows none (lspci -tv).</summary>
    public static uint? ClassFromText(string t)
    {
        bool Has(string w) => t.Contains(w, StringComparison.OrdinalIgnoreCase);
        if (Has("NVMe") || Has("SSD"))
        {
            return 0x010802;
        }
        if (Has("SATA") || Has("AHCI"))
        {
            return 0x010601;
        }
        if (Has("Ethernet") || Has("ConnectX") || Has("GbE") || Has("Gigabit"))
        {
            return 0x020000;
        }
        if (Has("Wireless") || Has("Wi-Fi") || Has("802.11") || Has("Network"))
        {
            return 0x028000;
        }
        if (Has("USB4") || Has("NHI"))
        {
            return 0x0c0340;
        }
        if (Has("USB") || Has("XHCI"))
        {
            return 0x0c0330;
        }
        if (Has("Audio"))
        {
            return 0x040300;
        }
        if (Has("VGA") || Has("Graphics") || Has("[AMD/ATI]") || Has("GeForce") || Has("Radeon"))
        {
            return 0x030000;
        }
        if (Has("IOMMU"))
        {
            return 0x080600;
        }
        if (Has("SMBus"))
        {
            return 0x0c0500;
        }
        if (Has("Host Bridge") || Has("Root Complex") || Has("Dummy Host Bridge"))
        {
            return 0x060000;
        }
        if (Has("PCI bridge") || Has("Root Port") || Has("GPP Bridge") || Has("Switch") || Has("Upstream Port") || Has("Downstream Port"))
        {
            return 0x060400;
        }
        if (Has("ISA bridge") || Has("LPC") || Has("eSPI"))
        {
            return 0x060100;
        }
        if (Has("Ethernet controller"))
        {
            return 0x020000;
        }
        if (Has("Mass storage"))
        {
            return 0x018000;
        }
        return null;
    }
}
