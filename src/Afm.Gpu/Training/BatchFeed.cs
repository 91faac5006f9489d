using Afm.Gpu.Data;
using Afm.Gpu.Kernels;

namespace Afm.Gpu.Training;

/// <summary>
/// Assembles an epoch's mini-batches into a <see cref="HostBatch"/> one step ahead: <see cref="Wait"/> waits for the
/// batch being filled, the caller uploads it and calls <see cref="FillNext"/>, which fills the next one in the
/// background while the accelerator runs the step. A failure while filling (a corrupt chunk, say) is raised as itself
/// by <see cref="Wait"/>.
/// </summary>
internal sealed class BatchFeed : IDisposable
{
    private readonly HostBatch _host;
    private readonly IEnumerator<RowBatch> _batches;
    private readonly CancellationToken _cancel;
    private Task<int> _fill;

    /// <summary>Starts filling the first of <paramref name="batches"/> into <paramref name="host"/>.</summary>
    public BatchFeed(HostBatch host, IEnumerable<RowBatch> batches, CancellationToken cancel)
    {
        _host = host;
        _batches = batches.GetEnumerator();
        _cancel = cancel;
        _fill = Start();
    }

    /// <summary>Waits for the batch being filled; its row count, 0 when the epoch has no more.</summary>
    public int Wait() => _fill.WaitAsync(_cancel).GetAwaiter().GetResult();

    /// <summary>Starts filling the next batch (after the last one was uploaded).</summary>
    public void FillNext() => _fill = Start();

    private Task<int> Start() => Task.Run(() =>
    {
        if (!_batches.MoveNext()) return 0;
        var next = _batches.Current;
        _host.Fill(next.Data, next.Rows, forTraining: true);
        return next.Rows.Count;
    }, _cancel);

    /// <summary>Waits for a fill in progress (which holds the enumerator), then releases the batches' source.</summary>
    public void Dispose()
    {
        try { _fill.Wait(CancellationToken.None); }
        catch (AggregateException) { } // raised by Wait already, or superseded by the failure being handled
        _batches.Dispose();
    }
}
