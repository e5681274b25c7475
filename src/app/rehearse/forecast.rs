//! The forecast of a rehearsal's figure at the target's size, from the scales measured.

use super::Forecast;

/// Extrapolates `measured` (scale, value) to scale 1: a power law through the two largest
/// scales (value ∝ scale^e), bracketed by the straight line through them; one scale only is
/// scaled linearly and said to be so.
pub fn forecast(figure: &str, unit: &str, measured: &[(f64, f64)]) -> Forecast {
    let mut points = measured.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let make = |at: f64, low: f64, high: f64, growth: &str, exponent| Forecast {
        figure: figure.to_string(),
        unit: unit.to_string(),
        measured: points.clone(),
        at_full_size: at,
        low: low.min(high),
        high: high.max(low),
        growth: growth.to_string(),
        exponent,
    };
    match points.as_slice() {
        [] => make(0.0, 0.0, 0.0, "not measured", None),
        [.., (s, v)] if (*s - 1.0).abs() < 1e-9 => make(*v, *v, *v, "measured", None),
        [(s, v)] => {
            let at = v / s.max(1e-9);
            make(at, *v, at, "assumed linear (one scale)", None)
        }
        [.., (s1, v1), (s2, v2)] => {
            let linear = v2 + (v2 - v1) / (s2 - s1) * (1.0 - s2);
            if *v1 <= 0.0 || *v2 <= 0.0 {
                return make(
                    linear.max(0.0),
                    v2.min(linear),
                    v2.max(linear),
                    "linear",
                    None,
                );
            }
            let e = (v2 / v1).ln() / (s2 / s1).ln();
            let power = v2 * (1.0 / s2).powf(e);
            let growth = if e < 0.3 {
                "constant"
            } else if e < 0.8 {
                "slower than linear"
            } else if e <= 1.25 {
                "linear"
            } else {
                "faster than linear"
            };
            // The two models disagree by what the two points cannot tell apart; a single
            // pair of runs also carries their noise, ±25 % of the value at the larger scale
            // carried to full size.
            let noise = 0.25 * power;
            let low = power.min(linear.max(0.0)) - noise;
            let high = power.max(linear) + noise;
            make(power, low.max(0.0), high, growth, Some(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::forecast;

    #[test]
    fn a_linear_figure_is_forecast_linear_and_a_constant_one_constant() {
        let linear = forecast("backfill", "s", &[(0.1, 1.0), (0.3, 3.0)]);
        assert_eq!(linear.growth, "linear");
        assert!((linear.at_full_size - 10.0).abs() < 1e-6);
        assert!(linear.low <= 10.0 && linear.high >= 10.0);
        let constant = forecast("expand", "s", &[(0.1, 0.5), (0.3, 0.52)]);
        assert_eq!(constant.growth, "constant");
        assert!(constant.at_full_size < 0.6);
        let faster = forecast("index", "s", &[(0.1, 1.0), (0.3, 9.0)]);
        assert_eq!(faster.growth, "faster than linear");
        assert!(faster.at_full_size > 50.0);
        let measured = forecast("x", "s", &[(1.0, 4.0)]);
        assert_eq!(
            (measured.growth.as_str(), measured.at_full_size),
            ("measured", 4.0)
        );
    }
}
