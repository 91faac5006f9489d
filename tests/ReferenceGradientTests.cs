using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;

namespace Afm.Gpu.Tests;

/// <summary>The double-precision reference's analytic gradients against central finite differences of its own loss.</summary>
public class ReferenceGradientTests
{
    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    [InlineData(ModelKind.Fm, LossKind.Logistic)]
    public void AnalyticGradientsMatchCentralDifferences(ModelKind kind, LossKind loss)
    {
        const int features = 9, k = 4, t = 3;
        const double lambda = 0.05;
        var model = Fixtures.RandomModel(kind, features, k, t, loss, seed: 7);
        var data = Fixtures.RaggedData(features, [5, 3, 2, 4, 1, 0], loss, seed: 11);
        var rows = Fixtures.Rows(data);
        var prm = RefParams.From(model);
        var grad = AfmReference.Gradient(kind, loss, prm, k, t, rows, lambda, out double dW0);

        // Central differences with h = 1e-6 in double: truncation ~h², rounding ~1e-16/h, so agreement
        // to 1e-7 absolute + 1e-6 relative is expected for smooth points. ReLU kinks are avoided
        // because the random z values are far from 0 relative to h.
        const double h = 1e-6;
        double Fd(Action<double> set, double x0)
        {
            set(x0 + h);
            double up = AfmReference.Loss(kind, loss, prm, k, t, rows, lambda);
            set(x0 - h);
            double down = AfmReference.Loss(kind, loss, prm, k, t, rows, lambda);
            set(x0);
            return (up - down) / (2 * h);
        }

        double w0 = prm.W0;
        double fdW0 = Fd(x => prm.W0 = x, w0);
        Assert.True(Math.Abs(fdW0 - dW0) <= 1e-7 + 1e-6 * Math.Abs(fdW0), $"w0: fd {fdW0} analytic {dW0}");
        var names = kind == ModelKind.Afm ? new[] { "w", "V", "W", "b", "h", "p" } : ["w", "V"];
        var analytic = grad.Arrays().ToDictionary(a => a.Name, a => a.Data);
        foreach (var (name, data2) in prm.Arrays())
        {
            if (!names.Contains(name)) continue;
            for (int i = 0; i < data2.Length; i++)
            {
                double x0 = data2[i];
                double fd = Fd(x => data2[i] = x, x0);
                double an = analytic[name][i];
                Assert.True(Math.Abs(fd - an) <= 1e-7 + 1e-6 * Math.Abs(fd), $"{name}[{i}]: finite difference {fd:G10} vs analytic {an:G10}");
            }
        }
    }
}
