//! A chart series that keeps a bounded number of points however long a run
//! gets: while it fills up it keeps every point; once full it drops every
//! other point and from then on keeps only every second new one, so the
//! points stay evenly spread over the whole run (burn-train's full history).
//! Memory and drawing time stay flat over a week-long run.

/// Points `(x, y)` of one series, at most `capacity` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundedSeries {
    points: Vec<(f64, f64)>,
    capacity: usize,
    /// Keep one pushed point in `stride`.
    stride: u64,
    /// Points pushed so far, kept or not.
    pushed: u64,
}

impl BoundedSeries {
    /// An empty series of at most `capacity` points (at least 2).
    pub fn new(capacity: usize) -> Self {
        BoundedSeries {
            points: Vec::new(),
            capacity: capacity.max(2),
            stride: 1,
            pushed: 0,
        }
    }

    /// Adds the next point; `x` should grow.
    pub fn push(&mut self, x: f64, y: f64) {
        if self.pushed.is_multiple_of(self.stride) {
            self.points.push((x, y));
            if self.points.len() > self.capacity {
                halve(&mut self.points);
                self.stride *= 2;
            }
        }
        self.pushed += 1;
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }
}

/// Keeps the points at even indices: half the resolution over the same span.
pub fn halve(points: &mut Vec<(f64, f64)>) {
    let mut i = 0;
    points.retain(|_| {
        i += 1;
        i % 2 == 1
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_keeps_every_other_point_from_the_first() {
        let mut p: Vec<(f64, f64)> = (0..7).map(|i| (i as f64, 0.0)).collect();
        halve(&mut p);
        let xs: Vec<f64> = p.iter().map(|p| p.0).collect();
        assert_eq!(xs, [0.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn a_long_run_stays_bounded_and_spans_the_whole_run() {
        let mut s = BoundedSeries::new(100);
        for step in 1..=10_000u64 {
            s.push(step as f64, 1.0 / step as f64);
            assert!(s.points().len() <= 100, "at step {step}");
        }
        let p = s.points();
        assert!(p.len() >= 50, "at least half full: {}", p.len());
        assert_eq!(p[0].0, 1.0, "the first point stays");
        assert!(
            p[p.len() - 1].0 > 9_800.0,
            "the last is recent: {:?}",
            p.last()
        );
        // Evenly spread: every gap is the same.
        let gaps: Vec<f64> = p.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|g| *g == gaps[0]), "{gaps:?}");
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_short_run_keeps_every_point() {
        let mut s = BoundedSeries::new(100);
        for step in 0..100 {
            s.push(step as f64, 0.5);
        }
        assert_eq!(s.points().len(), 100);
        s.push(100.0, 0.5);
        assert_eq!(
            s.points().len(),
            51,
            "full: half the points, the new one kept"
        );
        s.push(101.0, 0.5);
        assert_eq!(s.points().len(), 51, "then one in two");
        s.push(102.0, 0.5);
        assert_eq!(s.points().len(), 52);
    }
}
