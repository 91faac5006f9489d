using System.Globalization;
using System.Text.RegularExpressions;

namespace Afm.Gpu.Tests;

/// <summary>What ptxas reports for one kernel under <c>-Xptxas -v</c>.</summary>
internal sealed record PtxasKernel(int Registers, int SharedBytes, int StackFrame, int SpillStores, int SpillLoads);

/// <summary>Parses ptxas's verbose report (<c>ptxas -v</c>).</summary>
internal static partial class PtxasReport
{
    public static Dictionary<string, PtxasKernel> Parse(string log)
    {
        var result = new Dictionary<string, PtxasKernel>(StringComparer.Ordinal);
        string? current = null;
        int stack = 0, spillStores = 0, spillLoads = 0;
        foreach (string line in log.Split('\n'))
        {
            if (Entry().Match(line) is { Success: true } e)
            {
                current = e.Groups[1].Value;
                (stack, spillStores, spillLoads) = (0, 0, 0);
            }
            else if (current is not null && Frame().Match(line) is { Success: true } f)
            {
                stack = Int(f.Groups[1]);
                spillStores = Int(f.Groups[2]);
                spillLoads = Int(f.Groups[3]);
            }
            else if (current is not null && Used().Match(line) is { Success: true } u)
            {
                int smem = Smem().Match(line) is { Success: true } s ? Int(s.Groups[1]) : 0;
                result[current] = new PtxasKernel(Int(u.Groups[1]), smem, stack, spillStores, spillLoads);
                current = null;
            }
        }
        return result;
    }

    private static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Compiling entry function '(\w+)'")]
    private static partial Regex Entry();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex Frame();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex Used();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex Smem();
}

/// <summary>One loop of a kernel's machine code: the instructions from a backward branch's target to the branch.</summary>
internal sealed record SassLoop(int Start, int End, IReadOnlyList<string> Ops)
{
    public int Total => Ops.Count;

    /// <summary>Instructions whose opcode starts with <paramref name="prefix"/> (FFMA, LDL, LDG.E.128, ...).</summary>
    public int Count(string prefix) => Ops.Count(o => o.StartsWith(prefix, StringComparison.Ordinal));

    public override string ToString()
    {
        var top = Ops.GroupBy(o => o).OrderByDescending(g => g.Count()).Take(8).Select(g => $"{g.Key} {g.Count()}");
        return $"0x{Start:x5}-0x{End:x5}: {Total} instructions, FFMA {Count("FFMA")} ({100.0 * Count("FFMA") / Total:F0}%): {string.Join(", ", top)}";
    }
}

/// <summary>Reads cuobjdump's SASS listing of a cubin.</summary>
internal static partial class Sass
{
    /// <summary>cuobjdump from AFM_CUOBJDUMP, the PATH or /usr/local/cuda/bin (with nvdisasm, which it runs, beside it or on the PATH).</summary>
    public static bool TryFindCuobjdump(out string? path, out string? why)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("AFM_CUOBJDUMP") is { Length: > 0 } env) candidates.Add(env);
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            candidates.Add(Path.Combine(dir, "cuobjdump"));
        candidates.Add("/usr/local/cuda/bin/cuobjdump");
        path = candidates.FirstOrDefault(File.Exists);
        why = path is null ? $"no cuobjdump (looked at {string.Join(", ", candidates.Distinct())}; set AFM_CUOBJDUMP)" : null;
        return path is not null;
    }

    /// <summary>The SASS of one kernel of a cubin, as (address, opcode) in order.</summary>
    public static List<(int Address, string Op)> Disassemble(string cuobjdump, byte[] cubin, string kernel)
    {
        string file = Path.Combine(Path.GetTempPath(), $"afm-sass-{Environment.ProcessId}-{Guid.NewGuid():N}.cubin");
        File.WriteAllBytes(file, cubin);
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(cuobjdump) { RedirectStandardOutput = true, RedirectStandardError = true };
            // cuobjdump runs nvdisasm, which the toolkit keeps next to it
            start.Environment["PATH"] = Path.GetDirectoryName(Path.GetFullPath(cuobjdump)) + ":" + Environment.GetEnvironmentVariable("PATH");
            foreach (string a in new[] { "-sass", "-fun", kernel, file }) start.ArgumentList.Add(a);
            using var process = System.Diagnostics.Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            string text = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"cuobjdump exited with {process.ExitCode}: {stderr.Result}");
            var code = new List<(int, string)>();
            foreach (Match m in Instruction().Matches(text))
                code.Add((int.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), m.Groups[2].Value));
            Assert.True(code.Count > 0, $"no instructions of {kernel} in cuobjdump's listing");
            return code;
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Loops (a branch back to an address at or before itself) that hold no other loop.</summary>
    public static List<SassLoop> InnermostLoops(List<(int Address, string Op)> code)
    {
        var spans = new Dictionary<int, int>();
        foreach (var (address, op) in code)
        {
            if (!op.StartsWith("BRA", StringComparison.Ordinal)) continue;
            // the branch's operand follows the opcode in the listing; Instruction() keeps it in Op after a space
            var target = Target().Match(op);
            if (!target.Success) continue;
            int to = int.Parse(target.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (to <= address) spans[to] = Math.Max(spans.GetValueOrDefault(to), address);
        }
        var all = spans.Select(kv => (Start: kv.Key, End: kv.Value)).ToList();
        return all
            .Where(l => !all.Any(o => o != l && o.Start >= l.Start && o.End <= l.End))
            .Select(l => new SassLoop(l.Start, l.End, code.Where(c => c.Address >= l.Start && c.Address <= l.End).Select(c => Opcode(c.Op)).ToList()))
            .ToList();
    }

    private static string Opcode(string instruction) => instruction.Split(' ', 2)[0];

    // "        /*4070*/                   @!P0 LDG.E.128.CONSTANT R44, [R72.64] ;" -> 4070, "LDG.E.128.CONSTANT R44, [R72.64]"
    [GeneratedRegex(@"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][^;]*?)\s*;")]
    private static partial Regex Instruction();

    [GeneratedRegex(@"^BRA\S*\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)")]
    private static partial Regex Target();
}
