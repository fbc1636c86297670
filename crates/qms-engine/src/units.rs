//! Conversion between the units an agent reports and the unit a gate's threshold is written in.

use qms_api::MetricUnit;

/// `value` (in `from`) expressed in `to`; `None` when the units measure different things.
/// A metric reported without a unit is taken to be in the gate's unit.
pub fn convert(value: f64, from: Option<MetricUnit>, to: Option<MetricUnit>) -> Option<f64> {
    let (Some(from), Some(to)) = (from, to) else {
        return Some(value);
    };
    if from == to {
        return Some(value);
    }
    let (df, sf) = scale(from)?;
    let (dt, st) = scale(to)?;
    (df == dt).then(|| value * sf / st)
}

#[derive(PartialEq)]
enum Dimension {
    Fraction,
    Time,
    Size,
}

/// The dimension of a convertible unit and its size in the dimension's base unit.
fn scale(u: MetricUnit) -> Option<(Dimension, f64)> {
    use MetricUnit::*;
    Some(match u {
        Ratio => (Dimension::Fraction, 100.0),
        Percentage => (Dimension::Fraction, 1.0),
        Seconds => (Dimension::Time, 1000.0),
        Milliseconds => (Dimension::Time, 1.0),
        Bytes => (Dimension::Size, 1.0),
        Kilobytes => (Dimension::Size, 1024.0),
        Megabytes => (Dimension::Size, 1024.0 * 1024.0),
        Count | Score | Boolean => return None,
    })
}

pub fn name(u: MetricUnit) -> &'static str {
    use MetricUnit::*;
    match u {
        Percentage => "percentage",
        Ratio => "ratio",
        Count => "count",
        Seconds => "seconds",
        Milliseconds => "milliseconds",
        Bytes => "bytes",
        Kilobytes => "kilobytes",
        Megabytes => "megabytes",
        Score => "score",
        Boolean => "boolean",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricUnit::*;

    #[test]
    fn converts_within_a_dimension_only() {
        assert_eq!(convert(0.85, Some(Ratio), Some(Percentage)), Some(85.0));
        assert_eq!(convert(85.0, Some(Percentage), Some(Ratio)), Some(0.85));
        assert_eq!(
            convert(1500.0, Some(Milliseconds), Some(Seconds)),
            Some(1.5)
        );
        assert_eq!(convert(2.0, Some(Megabytes), Some(Kilobytes)), Some(2048.0));
        assert_eq!(convert(2048.0, Some(Bytes), Some(Kilobytes)), Some(2.0));
        assert_eq!(convert(3.0, Some(Count), Some(Count)), Some(3.0));
        assert_eq!(convert(3.0, Some(Count), Some(Percentage)), None);
        assert_eq!(convert(3.0, Some(Seconds), Some(Bytes)), None);
        assert_eq!(convert(3.0, None, Some(Bytes)), Some(3.0));
    }
}
