namespace Afm.Gpu.Tests;

public class SmokeTests
{
    [Fact]
    public void ModelHasShape()
    {
        var m = new Model.AfmModel(Model.ModelKind.Afm, 10, 4, 3, Model.LossKind.Squared);
        Assert.Equal(40, m.V.Length);
    }
}
