//! A partition's table files whose keys have not been read yet, found by the lower and upper
//! bounds their manifests record for one key column; and [`Span`], the same bounds over keys
//! dedup holds or has spilled.
//!
//! A row's dedup key includes that column (a quote's `event_time`, a trade's `trade_id`), so an
//! older row with the same key has the same value there and lies within its file's bounds: only
//! files whose bounds cover a new row's value can hold its duplicate. A one-minute batch's rows
//! are newer than every file's upper bound, and so read no file at all, however many the
//! partition has; a backfill over old data reads the files it overlaps, each once. A file
//! without usable bounds (a writer that records none) is read the first time its partition is
//! touched, as before this pruning.

use std::cmp::Ordering;

use iceberg::spec::{DataFile, Datum, PrimitiveLiteral};

/// A new row's value of the index's bounded key column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe<'a> {
    /// A timestamp (microseconds) or other integer column.
    Long(i64),
    /// A text column.
    Str(&'a str),
}

/// One file's lower or upper bound of the column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    Long(i64),
    Str(String),
}

impl Bound {
    fn of(datum: &Datum) -> Option<Self> {
        match datum.literal() {
            PrimitiveLiteral::Long(v) => Some(Bound::Long(*v)),
            PrimitiveLiteral::Int(v) => Some(Bound::Long(i64::from(*v))),
            PrimitiveLiteral::String(s) => Some(Bound::Str(s.clone())),
            _ => None,
        }
    }

    fn from_probe(probe: Probe<'_>) -> Self {
        match probe {
            Probe::Long(v) => Bound::Long(v),
            Probe::Str(s) => Bound::Str(s.to_string()),
        }
    }

    /// The bound against a probe; `None` when their kinds differ (nothing can be pruned).
    fn cmp_probe(&self, probe: Probe<'_>) -> Option<Ordering> {
        match (self, probe) {
            (Bound::Long(b), Probe::Long(p)) => Some(b.cmp(&p)),
            (Bound::Str(b), Probe::Str(p)) => Some(b.as_str().cmp(p)),
            _ => None,
        }
    }
}

/// The range of the bounded column's values over some keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Span {
    /// No keys.
    #[default]
    Empty,
    /// Every key's value lies in `[lower, upper]`.
    Known(Bound, Bound),
    /// Keys of a file without bounds: any value may be among them.
    Unknown,
}

impl Span {
    /// Widens the span to hold a value (allocating only when the value lies outside it).
    pub fn add_probe(&mut self, probe: Probe<'_>) {
        match self {
            Span::Unknown => {}
            Span::Empty => *self = Span::Known(Bound::from_probe(probe), Bound::from_probe(probe)),
            Span::Known(lower, upper) => match (lower.cmp_probe(probe), upper.cmp_probe(probe)) {
                (Some(Ordering::Greater), _) => *lower = Bound::from_probe(probe),
                (_, Some(Ordering::Less)) => *upper = Bound::from_probe(probe),
                (Some(_), Some(_)) => {}
                _ => *self = Span::Unknown,
            },
        }
    }

    /// Widens the span to hold another.
    pub fn add(&mut self, other: &Span) {
        match (&mut *self, other) {
            (_, Span::Empty) | (Span::Unknown, _) => {}
            (Span::Empty, _) | (_, Span::Unknown) => *self = other.clone(),
            (Span::Known(lower, upper), Span::Known(lo, hi)) => {
                if std::mem::discriminant(lower) != std::mem::discriminant(lo) {
                    *self = Span::Unknown;
                    return;
                }
                if lo < lower {
                    *lower = lo.clone();
                }
                if hi > upper {
                    *upper = hi.clone();
                }
            }
        }
    }

    /// Whether a key with this value may be among the span's keys.
    pub fn covers(&self, probe: Probe<'_>) -> bool {
        match self {
            Span::Empty => false,
            Span::Unknown => true,
            Span::Known(lower, upper) => {
                lower.cmp_probe(probe) != Some(Ordering::Greater)
                    && upper.cmp_probe(probe) != Some(Ordering::Less)
            }
        }
    }
}

/// Disjoint ranges [`Ranges`] keeps at most: more than the readers (stage-one tasks) whose rows
/// one partition usually receives at once.
pub const MAX_RANGES: usize = 8;

/// The values of some keys' bounded column as up to [`MAX_RANGES`] disjoint ranges when they
/// are integers (event times), else one [`Span`]. A partition receives rows from several
/// readers at once, each reader's in time order but hours apart from the others': one span
/// would cover the gaps between them, so every row of an earlier reader would fall within a
/// spilled segment and read it back; a range per reader does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Ranges {
    #[default]
    Empty,
    /// Sorted, disjoint, inclusive `(lower, upper)`.
    Longs(Vec<(i64, i64)>),
    /// Text values, or values without known bounds.
    Other(Span),
}

impl Ranges {
    /// Holds a new row's value.
    pub fn add_probe(&mut self, probe: Probe<'_>) {
        match (&mut *self, probe) {
            (Ranges::Empty, Probe::Long(v)) => *self = Ranges::Longs(vec![(v, v)]),
            (Ranges::Longs(ranges), Probe::Long(v)) => add_range(ranges, v, v),
            (Ranges::Other(span), p) => span.add_probe(p),
            (_, p) => {
                let mut span = self.to_span();
                span.add_probe(p);
                *self = Ranges::Other(span);
            }
        }
    }

    /// Holds the values of a file's (or a segment's) keys.
    pub fn add(&mut self, span: &Span) {
        match (&mut *self, span) {
            (_, Span::Empty) => {}
            (Ranges::Empty, Span::Known(Bound::Long(lo), Bound::Long(hi))) => {
                *self = Ranges::Longs(vec![(*lo, *hi)]);
            }
            (Ranges::Longs(ranges), Span::Known(Bound::Long(lo), Bound::Long(hi))) => {
                add_range(ranges, *lo, *hi);
            }
            (Ranges::Other(own), other) => own.add(other),
            (_, other) => {
                let mut own = self.to_span();
                own.add(other);
                *self = Ranges::Other(own);
            }
        }
    }

    /// Holds another set's values.
    pub fn union(&mut self, other: &Ranges) {
        match other {
            Ranges::Empty => {}
            Ranges::Longs(ranges) => {
                for (lo, hi) in ranges {
                    self.add(&Span::Known(Bound::Long(*lo), Bound::Long(*hi)));
                }
            }
            Ranges::Other(span) => self.add(span),
        }
    }

    /// Whether a key with this value may be among the keys.
    pub fn covers(&self, probe: Probe<'_>) -> bool {
        match (self, probe) {
            (Ranges::Empty, _) => false,
            (Ranges::Longs(ranges), Probe::Long(v)) => {
                let i = ranges.partition_point(|(_, hi)| *hi < v);
                ranges.get(i).is_some_and(|(lo, _)| *lo <= v)
            }
            (Ranges::Longs(_), Probe::Str(_)) => true,
            (Ranges::Other(span), p) => span.covers(p),
        }
    }

    /// One span over every value.
    fn to_span(&self) -> Span {
        match self {
            Ranges::Empty => Span::Empty,
            Ranges::Longs(ranges) => match (ranges.first(), ranges.last()) {
                (Some((lo, _)), Some((_, hi))) => Span::Known(Bound::Long(*lo), Bound::Long(*hi)),
                _ => Span::Empty,
            },
            Ranges::Other(span) => span.clone(),
        }
    }
}

/// Adds `[lo, hi]` to sorted disjoint ranges, merging those it overlaps; past [`MAX_RANGES`],
/// the two neighbours with the smallest gap become one.
fn add_range(ranges: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
    let first = ranges.partition_point(|(_, h)| *h < lo);
    let mut last = first;
    let (mut new_lo, mut new_hi) = (lo, hi);
    while let Some((l, h)) = ranges.get(last).filter(|(l, _)| *l <= hi) {
        new_lo = new_lo.min(*l);
        new_hi = new_hi.max(*h);
        last += 1;
    }
    if last == first + 1 && ranges[first] == (new_lo, new_hi) {
        return;
    }
    ranges.splice(first..last, [(new_lo, new_hi)]);
    if ranges.len() > MAX_RANGES {
        let closest = (1..ranges.len())
            .min_by_key(|&i| ranges[i].0.saturating_sub(ranges[i - 1].1))
            .unwrap_or(1);
        ranges[closest - 1].1 = ranges[closest].1;
        ranges.remove(closest);
    }
}

/// The files of one partition not read yet.
#[derive(Debug, Default)]
pub struct UnreadFiles {
    /// Read the first time the partition is touched.
    unbounded: Vec<DataFile>,
    /// `(lower, upper, file)`, sorted by `lower`.
    bounded: Vec<(Bound, Bound, DataFile)>,
    /// `reach[i]`: the largest upper bound in `bounded[..=i]`, so a search stops as soon as no
    /// earlier file reaches the probe.
    reach: Vec<Bound>,
    /// Kinds of bounds seen: a probe of another kind takes every file.
    kinds: (bool, bool),
}

impl UnreadFiles {
    /// Files of one partition, placed by their bounds of column `field_id`.
    pub fn new(files: Vec<DataFile>, field_id: i32) -> Self {
        let mut out = Self::default();
        for file in files {
            let lower = file.lower_bounds().get(&field_id).and_then(Bound::of);
            let upper = file.upper_bounds().get(&field_id).and_then(Bound::of);
            match (lower, upper) {
                (Some(lo), Some(hi))
                    if std::mem::discriminant(&lo) == std::mem::discriminant(&hi) =>
                {
                    out.kinds.0 |= matches!(lo, Bound::Long(_));
                    out.kinds.1 |= matches!(lo, Bound::Str(_));
                    out.bounded.push((lo, hi, file));
                }
                _ => out.unbounded.push(file),
            }
        }
        out.bounded.sort_by(|a, b| a.0.cmp(&b.0));
        out.index();
        out
    }

    fn index(&mut self) {
        self.reach.clear();
        for (_, upper, _) in &self.bounded {
            let next = match self.reach.last() {
                Some(r) if r >= upper => r.clone(),
                _ => upper.clone(),
            };
            self.reach.push(next);
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.unbounded.is_empty() && self.bounded.is_empty()
    }

    /// Removes and returns the files that may hold a row with value `probe` (the unbounded
    /// ones and those whose bounds cover it), each with the span of its rows' values.
    pub fn take_covering(&mut self, probe: Probe<'_>) -> Vec<(DataFile, Span)> {
        let mut out: Vec<(DataFile, Span)> = std::mem::take(&mut self.unbounded)
            .into_iter()
            .map(|f| (f, Span::Unknown))
            .collect();
        if self.bounded.is_empty() {
            return out;
        }
        let mixed = match probe {
            Probe::Long(_) => self.kinds.1,
            Probe::Str(_) => self.kinds.0,
        };
        if mixed {
            out.extend(
                self.bounded
                    .drain(..)
                    .map(|(lo, hi, f)| (f, Span::Known(lo, hi))),
            );
            self.reach.clear();
            return out;
        }
        // Files with lower <= probe form a prefix; walk it back while one can still reach.
        let end = self
            .bounded
            .partition_point(|(lo, _, _)| lo.cmp_probe(probe) != Some(Ordering::Greater));
        let mut hits = Vec::new();
        for i in (0..end).rev() {
            if self.reach[i].cmp_probe(probe) == Some(Ordering::Less) {
                break;
            }
            if self.bounded[i].1.cmp_probe(probe) != Some(Ordering::Less) {
                hits.push(i);
            }
        }
        if !hits.is_empty() {
            // `hits` is descending, so removing in order keeps the other indices valid.
            for i in hits {
                let (lo, hi, f) = self.bounded.remove(i);
                out.push((f, Span::Known(lo, hi)));
            }
            self.index();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_keep_apart_the_values_of_readers_far_apart() {
        let mut r = Ranges::default();
        // Two readers' rows interleaved: one from 100, one from 10,000, each a step at a time.
        for step in 0..50 {
            r.add_probe(Probe::Long(100 + step));
            r.add_probe(Probe::Long(10_000 + step));
        }
        let Ranges::Longs(ranges) = &r else {
            panic!("{r:?}")
        };
        assert!(ranges.len() <= MAX_RANGES, "{ranges:?}");
        assert_eq!(ranges.first(), Some(&(100, ranges[0].1)));
        assert_eq!(ranges.last().map(|x| x.1), Some(10_049));
        for step in 0..50 {
            assert!(r.covers(Probe::Long(100 + step)) && r.covers(Probe::Long(10_000 + step)));
        }
        // The next rows of either reader lie past its values, so a spilled segment of these
        // keys is not read back for them; one span (100..=10,049) would cover them all.
        for v in [99, 150, 5_000, 9_999, 10_050] {
            assert!(!r.covers(Probe::Long(v)), "{v}");
        }
        // Past MAX_RANGES, the closest neighbours merge: a value once held stays covered.
        for k in 0..20 {
            r.add_probe(Probe::Long(1_000 * k));
        }
        assert!(matches!(&r, Ranges::Longs(v) if v.len() == MAX_RANGES));
        for v in [0, 100, 149, 5_000, 10_000, 10_049, 19_000] {
            assert!(r.covers(Probe::Long(v)), "{v}");
        }
        assert!(!r.covers(Probe::Long(19_001)) && !r.covers(Probe::Long(-1)));
        // A file's bounds are one more range; text falls back to one span.
        r.add(&Span::Known(Bound::Long(-50), Bound::Long(-10)));
        assert!(r.covers(Probe::Long(-30)) && !r.covers(Probe::Long(-51)));
        let mut other = Ranges::default();
        other.union(&r);
        assert_eq!(other, r);
        r.add_probe(Probe::Str("t1"));
        assert!(matches!(r, Ranges::Other(Span::Unknown)));
        assert!(r.covers(Probe::Long(-5_000)));
    }
    use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Struct};
    use std::collections::HashMap;

    const FIELD: i32 = 7;

    fn file(path: &str, bounds: Option<(Datum, Datum)>) -> DataFile {
        let (lower, upper) = match bounds {
            Some((lo, hi)) => (HashMap::from([(FIELD, lo)]), HashMap::from([(FIELD, hi)])),
            None => (HashMap::new(), HashMap::new()),
        };
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(path.to_string())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(1)
            .file_size_in_bytes(1)
            .lower_bounds(lower)
            .upper_bounds(upper)
            .build()
            .unwrap()
    }

    fn timed(path: &str, lo: i64, hi: i64) -> DataFile {
        file(
            path,
            Some((Datum::timestamp_micros(lo), Datum::timestamp_micros(hi))),
        )
    }

    fn paths(files: Vec<(DataFile, Span)>) -> Vec<String> {
        let mut p: Vec<String> = files.iter().map(|f| f.0.file_path().to_string()).collect();
        p.sort();
        p
    }

    #[test]
    fn only_files_whose_bounds_cover_the_value_are_taken_and_each_once() {
        let files = vec![
            timed("minute-0", 0, 59),
            timed("minute-1", 60, 119),
            timed("whole-hour", 0, 3599),
            timed("minute-2", 120, 179),
        ];
        let mut unread = UnreadFiles::new(files, FIELD);
        // A newer row reads nothing.
        assert!(unread.take_covering(Probe::Long(3600)).is_empty());
        assert_eq!(
            paths(unread.take_covering(Probe::Long(60))),
            ["minute-1", "whole-hour"]
        );
        assert!(unread.take_covering(Probe::Long(61)).is_empty());
        // Bounds are inclusive at both ends.
        assert_eq!(paths(unread.take_covering(Probe::Long(179))), ["minute-2"]);
        assert_eq!(paths(unread.take_covering(Probe::Long(0))), ["minute-0"]);
        assert!(unread.is_empty());
    }

    #[test]
    fn files_without_bounds_are_taken_at_the_first_touch() {
        let files = vec![file("no-stats", None), timed("old", 0, 9)];
        let mut unread = UnreadFiles::new(files, FIELD);
        assert_eq!(paths(unread.take_covering(Probe::Long(100))), ["no-stats"]);
        assert!(unread.take_covering(Probe::Long(100)).is_empty());
        assert_eq!(paths(unread.take_covering(Probe::Long(5))), ["old"]);
    }

    #[test]
    fn a_span_widens_to_hold_its_values_and_covers_only_them() {
        let mut span = Span::default();
        assert!(!span.covers(Probe::Long(5)));
        span.add_probe(Probe::Long(5));
        span.add_probe(Probe::Long(9));
        span.add_probe(Probe::Long(7));
        assert_eq!(span, Span::Known(Bound::Long(5), Bound::Long(9)));
        assert!(span.covers(Probe::Long(5)) && span.covers(Probe::Long(9)));
        assert!(!span.covers(Probe::Long(4)) && !span.covers(Probe::Long(10)));
        span.add(&Span::Known(Bound::Long(0), Bound::Long(1)));
        assert_eq!(span, Span::Known(Bound::Long(0), Bound::Long(9)));
        // A value of another kind, or keys of unknown values, make it cover everything.
        let mut other = span.clone();
        other.add_probe(Probe::Str("x"));
        assert_eq!(other, Span::Unknown);
        span.add(&Span::Unknown);
        assert!(span.covers(Probe::Long(1_000)));
    }

    #[test]
    fn text_bounds_compare_as_text_and_another_kind_takes_everything() {
        let ids = |lo: &str, hi: &str| Some((Datum::string(lo), Datum::string(hi)));
        let files = vec![
            file("m61", ids("s1-m61-0", "s1-m61-9")),
            file("m6", ids("s1-m6-0", "s1-m6-9")),
        ];
        let mut unread = UnreadFiles::new(files, FIELD);
        assert!(unread.take_covering(Probe::Str("s1-m62-0")).is_empty());
        assert_eq!(paths(unread.take_covering(Probe::Str("s1-m6-5"))), ["m6"]);
        // A probe of the wrong kind cannot be compared: every file may hold it.
        assert_eq!(paths(unread.take_covering(Probe::Long(1))), ["m61"]);
    }
}
