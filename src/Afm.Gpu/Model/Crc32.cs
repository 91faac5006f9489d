using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Afm.Gpu.Model;

/// <summary>
/// CRC-32 as used by zlib, gzip and PNG (IEEE 802.3; reflected polynomial 0xEDB88320,
/// initial value and final XOR 0xFFFFFFFF), slice-by-8. Check value: CRC of "123456789" is 0xCBF43926.
/// </summary>
internal static class Crc32
{
    private const uint Polynomial = 0xEDB88320u;

    // Eight 256-entry tables back to back: table s gives the CRC of a byte followed by s zero bytes.
    private static readonly uint[] Table = BuildTable();

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);

    /// <summary>
    /// Extends a finished CRC with more data: <c>Append(Compute(a), b) == Compute(a + b)</c>;
    /// start from 0.
    /// </summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        ref uint t = ref MemoryMarshal.GetArrayDataReference(Table);
        uint c = ~crc;
        while (data.Length >= 8)
        {
            uint lo = c ^ BinaryPrimitives.ReadUInt32LittleEndian(data);
            uint hi = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            c = At(ref t, 7, lo & 0xFF) ^ At(ref t, 6, (lo >> 8) & 0xFF) ^ At(ref t, 5, (lo >> 16) & 0xFF) ^ At(ref t, 4, lo >> 24)
              ^ At(ref t, 3, hi & 0xFF) ^ At(ref t, 2, (hi >> 8) & 0xFF) ^ At(ref t, 1, (hi >> 16) & 0xFF) ^ At(ref t, 0, hi >> 24);
            data = data[8..];
        }
        foreach (byte b in data)
            c = At(ref t, 0, (c ^ b) & 0xFF) ^ (c >> 8);
        return ~c;
    }

    // Indices are always < 256, so the unchecked access stays inside the 2048-entry table.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint At(ref uint table, int slice, uint index) => Unsafe.Add(ref table, (nint)(((uint)slice << 8) | index));

    private static uint[] BuildTable()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int j = 0; j < 8; j++) c = (c & 1) != 0 ? Polynomial ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        for (int s = 1; s < 8; s++)
            for (int i = 0; i < 256; i++)
            {
                uint prev = t[(s - 1) * 256 + i];
                t[s * 256 + i] = (prev >> 8) ^ t[prev & 0xFF];
            }
        return t;
    }
}
