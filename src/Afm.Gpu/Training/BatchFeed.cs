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
    private readonly Func<int, (int Lo, int Hi)>? _shard;
    private readonly CancellationToken _cancel;
    private Task<(int Count, int Offset)> _fill;

    /// <summary>
    /// Starts filling the first of <paramref name="batches"/> into <paramref name="host"/>: all its rows, or with
    /// <paramref name="shard"/> (which maps a batch's row count to the range this process takes) that range only.
    /// </summary>
    public BatchFeed(HostBatch host, IEnumerable<RowBatch> batches, Func<int, (int Lo, int Hi)>? shard, CancellationToken cancel)
    {
        _host = host;
        _batches = batches.GetEnumerator();
        _shard = shard;
        _cancel = cancel;
        _fill = Start();
    }

    /// <summary>The row count of the (whole) batch <see cref="Wait"/> returned last.</summary>
    public int Count { get; private set; }

    /// <summary>Where in that batch the rows filled begin (0 without a shard).</summary>
    public int Offset { get; private set; }

    /// <summary>Waits for the batch being filled; the whole batch's row count, 0 when the epoch has no more.</summary>
    public int Wait()
    {
        (Count, Offset) = _fill.WaitAsync(_cancel).GetAwaiter().GetResult();
        return Count;
    }

    /// <summary>Starts filling the next batch (after the last one was uploaded).</summary>
    public void FillNext() => _fill = Start();

    private Task<(int Count, int Offset)> Start() => Task.Run(() =>
    {
        if (!_batches.MoveNext()) return (0, 0);
        var next = _batches.Current;
        int count = next.Rows.Count;
        var (lo, hi) = _shard?.Invoke(count) ?? (0, count);
        _host.Fill(next.Data, next.Rows.AsSpan(lo, hi - lo), forTraining: true);
        return (count, lo);
    }, _cancel);

    /// <summary>Waits for a fill in progress (which holds the enumerator), then releases the batches' source.</summary>
    public void Dispose()
    {
        try { _fill.Wait(CancellationToken.None); }
        catch (AggregateException) { } // raised by Wait already, or superseded by the failure being handled
        _batches.Dispose();
    }
}
