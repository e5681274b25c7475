//! Baselines: the normal level of a metric, as a band computed from a window of history.

use serde::{Deserialize, Serialize};

/// The fewest points a window needs before its band is trusted.
pub const MIN_SAMPLES: usize = 10;

/// Scales the median absolute deviation to a standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// The normal range of a metric: `median ± spread`, where the spread is `k` robust standard
/// deviations (scaled MAD) but never narrower than a floor, so that a metric flat at zero
/// does not alert on its first small move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// 5th and 95th percentiles of the window, for display.
    pub p5: f64,
    pub p95: f64,
    /// Points in the window.
    pub samples: usize,
}

/// How wide a band is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandWidth {
    /// Robust standard deviations on each side of the median.
    pub k: f64,
    /// The narrowest half-width, in the metric's unit.
    pub min_spread: f64,
    /// The narrowest half-width as a fraction of the median.
    pub min_relative_spread: f64,
}

impl Band {
    /// The band of `values`, or None when there are fewer than [`MIN_SAMPLES`] finite values.
    pub fn from_values(values: &[f64], width: BandWidth) -> Option<Band> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.len() < MIN_SAMPLES {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let mad = percentile(&deviations, 0.5);
        let spread = (width.k * MAD_TO_SIGMA * mad)
            .max(width.min_spread)
            .max(width.min_relative_spread * median.abs());
        Some(Band {
            median,
            low: median - spread,
            high: median + spread,
            p5: percentile(&sorted, 0.05),
            p95: percentile(&sorted, 0.95),
            samples: sorted.len(),
        })
    }

    /// True when `value` is above the band.
    pub fn is_above(&self, value: f64) -> bool {
        value > self.high
    }

    /// True when `value` is below the band.
    pub fn is_below(&self, value: f64) -> bool {
        value < self.low
    }
}

/// Linear-interpolated percentile of sorted, non-empty values (`q` from 0 to 1).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTH: BandWidth = BandWidth {
        k: 3.0,
        min_spread: 1.0,
        min_relative_spread: 0.0,
    };

    #[test]
    fn the_band_is_the_median_plus_minus_k_robust_deviations() {
        // Median 10; absolute deviations sorted 0,0,0,0,1,1,1,2,2,4,4 → MAD 1.
        let values = [6.0, 8.0, 9.0, 10.0, 10.0, 10.0, 11.0, 12.0, 14.0, 10.0, 9.0];
        let band = Band::from_values(&values, WIDTH).expect("enough samples");
        assert_eq!(band.median, 10.0);
        let spread = 3.0 * 1.4826 * 1.0;
        assert!((band.high - (10.0 + spread)).abs() < 1e-9, "{band:?}");
        assert!((band.low - (10.0 - spread)).abs() < 1e-9, "{band:?}");
        assert!(band.is_above(15.0));
        assert!(!band.is_above(14.0));
    }

    #[test]
    fn a_flat_metric_gets_the_floor_width() {
        let band = Band::from_values(&[0.0; 20], WIDTH).expect("enough samples");
        assert_eq!((band.low, band.high), (-1.0, 1.0));
        let relative = BandWidth {
            min_relative_spread: 0.25,
            ..WIDTH
        };
        let band = Band::from_values(&[100.0; 20], relative).expect("enough samples");
        assert_eq!((band.low, band.high), (75.0, 125.0));
    }

    #[test]
    fn too_few_samples_give_no_band() {
        assert_eq!(Band::from_values(&[1.0; 9], WIDTH), None);
        assert_eq!(Band::from_values(&[f64::NAN; 30], WIDTH), None);
    }
}
