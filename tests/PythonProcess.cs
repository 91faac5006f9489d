using System.Diagnostics;

namespace Afm.Gpu.Tests;

/// <summary>Runs a Python that has a given module (for checks against independent implementations), or says there is none.</summary>
internal static class PythonProcess
{
    /// <summary>The first of <c>$AFM_PYTHON</c>, <c>/usr/bin/python3</c> and <c>python3</c> that imports <paramref name="module"/>, or null.</summary>
    public static string? WithModule(string module)
    {
        string[] candidates = [Environment.GetEnvironmentVariable("AFM_PYTHON") ?? "", "/usr/bin/python3", "python3"];
        foreach (string py in candidates.Where(c => c.Length > 0))
        {
            try
            {
                var (rc, _) = Run(py, $"-c \"import {module}\"");
                if (rc == 0) return py;
            }
            catch (System.ComponentModel.Win32Exception) { }
        }
        return null;
    }

    /// <summary>Runs <paramref name="file"/> with <paramref name="args"/>, optionally feeding <paramref name="stdin"/>; returns the exit code and stdout + stderr.</summary>
    public static (int Rc, string Output) Run(string file, string args, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null };
        using var p = Process.Start(psi)!;
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + err.Result);
    }
}
