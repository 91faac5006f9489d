namespace Afm.Gpu.Training;

/// <summary>
/// An option of <see cref="TrainerOptions"/> out of range. The message reads <c>option Name = value: rule</c>;
/// <see cref="Option"/>, <see cref="Value"/> and <see cref="Rule"/> give the parts, so that a front end can
/// name the option its own way.
/// </summary>
public sealed class InvalidOptionException : ArgumentException
{
    /// <summary>Creates the exception for option <paramref name="option"/> (a <see cref="TrainerOptions"/> property name).</summary>
    public InvalidOptionException(string option, string value, string rule) : base($"option {option} = {value}: {rule}", option)
    {
        Option = option;
        Value = value;
        Rule = rule;
    }

    /// <summary>The property of <see cref="TrainerOptions"/>.</summary>
    public string Option { get; }

    /// <summary>The rejected value, as text.</summary>
    public string Value { get; }

    /// <summary>What the value must be.</summary>
    public string Rule { get; }

    /// <inheritdoc />
    public override string Message => $"option {Option} = {Value}: {Rule}";
}
