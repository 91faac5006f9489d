namespace Afm.Gpu.Model;

/// <summary>Which model a parameter set describes.</summary>
public enum ModelKind
{
    /// <summary>Attentional factorization machine (Xiao et al., 2017).</summary>
    Afm = 0,
    /// <summary>Plain factorization machine: attention weights fixed at 1, projection p fixed at 1.</summary>
    Fm = 1,
}

/// <summary>Training loss, which also decides how predictions are read.</summary>
public enum LossKind
{
    /// <summary>Squared error; predictions are real values (regression, e.g. ratings).</summary>
    Squared = 0,
    /// <summary>Logistic loss on labels in {0,1} (or {-1,1}); predictions are probabilities.</summary>
    Logistic = 1,
}

/// <summary>
/// The parameters of an AFM or FM model, host side. Layouts (row-major):
/// <c>W0</c> [1], <c>Linear</c> [n], <c>V</c> [n x k], <c>AttnW</c> [t x k], <c>AttnB</c> [t],
/// <c>AttnH</c> [t], <c>Proj</c> [k]. For FM, t = 0 and the attention arrays are empty,
/// and <c>Proj</c> is all ones.
/// </summary>
public sealed class AfmModel
{
    /// <summary>Creates a zero-filled model of the given shape.</summary>
    public AfmModel(ModelKind kind, int featureCount, int k, int t, LossKind loss)
    {
        if (featureCount <= 0) throw new ArgumentOutOfRangeException(nameof(featureCount), featureCount, "must be positive");
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "must be positive");
        if (kind == ModelKind.Afm && t <= 0) throw new ArgumentOutOfRangeException(nameof(t), t, "must be positive for AFM");
        if (kind == ModelKind.Fm) t = 0;
        Kind = kind;
        FeatureCount = featureCount;
        K = k;
        T = t;
        Loss = loss;
        W0 = new float[1];
        Linear = new float[featureCount];
        V = new float[(long)featureCount * k];
        AttnW = new float[t * k];
        AttnB = new float[t];
        AttnH = new float[t];
        Proj = new float[k];
        if (kind == ModelKind.Fm) Array.Fill(Proj, 1f);
    }

    /// <summary>AFM or FM.</summary>
    public ModelKind Kind { get; }
    /// <summary>Number of features n.</summary>
    public int FeatureCount { get; }
    /// <summary>Embedding size k.</summary>
    public int K { get; }
    /// <summary>Attention factor t (hidden size of the attention MLP); 0 for FM.</summary>
    public int T { get; }
    /// <summary>The loss the model was trained with.</summary>
    public LossKind Loss { get; }
    /// <summary>Global bias w0 (one element).</summary>
    public float[] W0 { get; }
    /// <summary>Linear weights w, one per feature.</summary>
    public float[] Linear { get; }
    /// <summary>Embeddings V, n x k row-major.</summary>
    public float[] V { get; }
    /// <summary>Attention MLP weights W, t x k row-major.</summary>
    public float[] AttnW { get; }
    /// <summary>Attention MLP bias b, length t.</summary>
    public float[] AttnB { get; }
    /// <summary>Attention output vector h, length t.</summary>
    public float[] AttnH { get; }
    /// <summary>Projection p, length k (all ones for FM).</summary>
    public float[] Proj { get; }
    /// <summary>
    /// For regression: predictions are clipped to [<see cref="LabelMin"/>, <see cref="LabelMax"/>]
    /// (the training labels' range), as in the paper's evaluation. NaN means no clipping.
    /// </summary>
    public float LabelMin { get; set; } = float.NaN;
    /// <summary>Upper end of the clipping range; see <see cref="LabelMin"/>.</summary>
    public float LabelMax { get; set; } = float.NaN;

    /// <summary>
    /// How the model's data is read: the text format and the feature hashing (<see cref="Data.InputEncoding"/>).
    /// Saved in the model file, so that every reader of data for the model reads it as it was trained
    /// (<see cref="Data.LibFmReadOptions.For"/>).
    /// </summary>
    public Data.InputEncoding Input { get; set; } = Data.InputEncoding.Default;

    /// <summary>A deep copy.</summary>
    public AfmModel Clone()
    {
        var m = new AfmModel(Kind, FeatureCount, K, Math.Max(T, 1), Loss) { LabelMin = LabelMin, LabelMax = LabelMax, Input = Input };
        m.CopyFrom(this);
        return m;
    }

    /// <summary>Copies every parameter from a model of the same shape.</summary>
    public void CopyFrom(AfmModel other)
    {
        if (other.Kind != Kind || other.FeatureCount != FeatureCount || other.K != K || other.T != T)
            throw new ArgumentException("models differ in shape", nameof(other));
        other.W0.CopyTo(W0, 0);
        other.Linear.CopyTo(Linear, 0);
        other.V.CopyTo(V, 0);
        other.AttnW.CopyTo(AttnW, 0);
        other.AttnB.CopyTo(AttnB, 0);
        other.AttnH.CopyTo(AttnH, 0);
        other.Proj.CopyTo(Proj, 0);
        LabelMin = other.LabelMin;
        LabelMax = other.LabelMax;
        Input = other.Input;
    }

    /// <summary>The parameter tensors by name, in file order.</summary>
    public IEnumerable<(string Name, float[] Data, int[] Shape)> Tensors()
    {
        yield return ("w0", W0, [1]);
        yield return ("w", Linear, [FeatureCount]);
        yield return ("V", V, [FeatureCount, K]);
        if (Kind == ModelKind.Afm)
        {
            yield return ("W", AttnW, [T, K]);
            yield return ("b", AttnB, [T]);
            yield return ("h", AttnH, [T]);
            yield return ("p", Proj, [K]);
        }
    }
}
