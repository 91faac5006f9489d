using System.Globalization;

namespace Afm.Gpu.Data;

/// <summary>
/// Names and fields of feature ids, for explanations. Built from a file (<see cref="Load"/>) or from
/// id ranges (<see cref="FromRanges"/>). Ids the map does not cover are named <c>f&lt;id&gt;</c> and
/// belong to the field <see cref="OtherField"/> (<c>other</c>).
/// </summary>
public sealed class FeatureMap
{
    /// <summary>The name of the field that ids without a field belong to.</summary>
    public const string OtherField = "other";

    private readonly Dictionary<int, (string Name, int Field)> _byId = [];
    private readonly List<(int First, int Last, int Field)> _ranges = []; // sorted, disjoint
    private readonly List<string> _fields = [];
    private readonly Dictionary<string, int> _fieldIndex = new(StringComparer.Ordinal);

    private FeatureMap() { }

    /// <summary>The field names, in order of first appearance; <c>other</c> is always among them (last unless named earlier).</summary>
    public IReadOnlyList<string> FieldNames => _fields;

    /// <summary>The name of feature <paramref name="id"/>, or <c>f&lt;id&gt;</c> when the map has none.</summary>
    public string NameOf(int id) => _byId.TryGetValue(id, out var e) ? e.Name : $"f{id}";

    /// <summary>The field index (into <see cref="FieldNames"/>) of feature <paramref name="id"/>.</summary>
    public int FieldOf(int id)
    {
        if (_byId.TryGetValue(id, out var e)) return e.Field;
        int lo = 0, hi = _ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            var r = _ranges[mid];
            if (id < r.First) hi = mid - 1;
            else if (id > r.Last) lo = mid + 1;
            else return r.Field;
        }
        return _fieldIndex[OtherField];
    }

    /// <summary>The field of every id below <paramref name="featureCount"/>, as an array indexed by id.</summary>
    public int[] FieldArray(int featureCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(featureCount);
        var fields = new int[featureCount];
        for (int id = 0; id < featureCount; id++) fields[id] = FieldOf(id);
        return fields;
    }

    private int Field(string name)
    {
        if (!_fieldIndex.TryGetValue(name, out int index))
        {
            index = _fields.Count;
            _fields.Add(name);
            _fieldIndex.Add(name, index);
        }
        return index;
    }

    private FeatureMap Complete()
    {
        Field(OtherField);
        return this;
    }

    /// <summary>
    /// Reads a feature map file: one feature per line, <c>id name [field]</c>, separated by spaces or tabs;
    /// blank lines and lines starting with <c>#</c> are skipped. Without a field, the field is the part of
    /// the name before the first <c>=</c> or <c>:</c> (<c>user=42</c> belongs to <c>user</c>), else the name itself.
    /// </summary>
    /// <exception cref="DataFormatException">The file is missing or a line is malformed (the message names file:line).</exception>
    public static FeatureMap Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        IEnumerable<string> lines;
        try { lines = File.ReadLines(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DataFormatException(path, 0, "file not found", e);
        }
        var map = new FeatureMap();
        long lineNo = 0;
        foreach (string line in lines)
        {
            lineNo++;
            string text = line.Trim();
            if (text.Length == 0 || text[0] == '#') continue;
            string[] parts = text.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length is < 2 or > 3)
                throw new DataFormatException(path, lineNo, $"expected 'id name [field]', found {parts.Length} column(s)");
            if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new DataFormatException(path, lineNo, $"feature id '{parts[0]}' is not a non-negative integer");
            string name = parts[1];
            string field = parts.Length == 3 ? parts[2] : DefaultField(name);
            if (!map._byId.TryAdd(id, (name, map.Field(field))))
                throw new DataFormatException(path, lineNo, $"feature id {id} is listed twice");
        }
        return map.Complete();
    }

    /// <summary>Builds a map from features given by id, name and field (e.g. the names hashed to each row, <see cref="LibFmReader.ReadWithNames"/>).</summary>
    /// <exception cref="ArgumentException">An id is negative or listed twice.</exception>
    public static FeatureMap FromNames(IEnumerable<(int Id, string Name, string Field)> features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var map = new FeatureMap();
        foreach (var (id, name, field) in features)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(id);
            if (!map._byId.TryAdd(id, (name, map.Field(field))))
                throw new ArgumentException($"feature id {id} is listed twice", nameof(features));
        }
        return map.Complete();
    }

    /// <summary>The field a name implies: the part before the first <c>=</c> or <c>:</c>, if not empty; else the name.</summary>
    public static string DefaultField(string name)
    {
        int cut = name.IndexOfAny(['=', ':']);
        return cut > 0 ? name[..cut] : name;
    }

    /// <summary>
    /// Builds a map from id ranges, as in <c>user:0-942,item:943-2624,genre:2625</c>: each entry is
    /// <c>field:first-last</c> (inclusive) or <c>field:id</c>; a field may have several ranges. Ids in no
    /// range belong to <c>other</c>. Features are named <c>f&lt;id&gt;</c>.
    /// </summary>
    /// <param name="spec">Comma-separated ranges.</param>
    /// <param name="featureCount">Number of features; every range must lie below it.</param>
    /// <exception cref="ArgumentException">An entry is malformed, empty, out of bounds or overlaps another.</exception>
    public static FeatureMap FromRanges(string spec, int featureCount)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureCount);
        var map = new FeatureMap();
        foreach (string raw in spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = raw.LastIndexOf(':');
            string field = colon > 0 ? raw[..colon].Trim() : "";
            string[] bounds = colon > 0 ? raw[(colon + 1)..].Split('-', StringSplitOptions.TrimEntries) : [];
            if (field.Length == 0 || bounds.Length is < 1 or > 2
                || !int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out int first)
                || !int.TryParse(bounds[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int last))
                throw new ArgumentException($"field range '{raw}': expected field:first-last or field:id, as in user:0-942", nameof(spec));
            if (first > last) throw new ArgumentException($"field range '{raw}': {first} is above {last}", nameof(spec));
            if (last >= featureCount)
                throw new ArgumentException($"field range '{raw}': id {last} is not below the feature count {featureCount}", nameof(spec));
            map._ranges.Add((first, last, map.Field(field)));
        }
        if (map._ranges.Count == 0) throw new ArgumentException("no field ranges given", nameof(spec));
        map._ranges.Sort((a, b) => a.First.CompareTo(b.First));
        for (int i = 1; i < map._ranges.Count; i++)
            if (map._ranges[i].First <= map._ranges[i - 1].Last)
                throw new ArgumentException(
                    $"field ranges overlap: {map._fields[map._ranges[i - 1].Field]} and {map._fields[map._ranges[i].Field]} both hold id {map._ranges[i].First}", nameof(spec));
        return map.Complete();
    }

    /// <summary>
    /// Builds a map from the field index of every id (e.g. <c>PlantedData.FieldOf</c>); field <c>f</c> is named
    /// <paramref name="fieldNames"/>[f], or <c>field&lt;f&gt;</c> without names.
    /// </summary>
    /// <exception cref="ArgumentException">A field index is negative or has no name.</exception>
    public static FeatureMap FromFields(IReadOnlyList<int> fieldOf, IReadOnlyList<string>? fieldNames = null)
    {
        ArgumentNullException.ThrowIfNull(fieldOf);
        int fields = fieldOf.Count == 0 ? 0 : fieldOf.Max() + 1;
        fieldNames ??= [.. Enumerable.Range(0, fields).Select(f => $"field{f}")];
        var map = new FeatureMap();
        foreach (string name in fieldNames) map.Field(name);
        for (int id = 0; id < fieldOf.Count; id++)
        {
            int f = fieldOf[id];
            if (f < 0 || f >= fieldNames.Count)
                throw new ArgumentException($"feature {id} has field {f}, outside the {fieldNames.Count} named fields", nameof(fieldOf));
            int field = map._fieldIndex[fieldNames[f]];
            if (map._ranges.Count > 0 && map._ranges[^1] is var last && last.Field == field && last.Last == id - 1)
                map._ranges[^1] = last with { Last = id };
            else map._ranges.Add((id, id, field));
        }
        return map.Complete();
    }
}
