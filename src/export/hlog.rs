//! HdrHistogram interval logs (`.hlog`): one exact interval histogram per source per call.
//!
//! Needs the cargo feature `hlog` (off by default), which turns on the `hdrhistogram` crate's
//! `serialization` feature (and with it `flate2`, `nom` and `base64`).
//!
//! An [`IntervalLogger`] wraps any [`std::io::Write`] and writes the interval log format that
//! HdrHistogram's Java `HistogramLogWriter`, the `hdrhistogram` crate's
//! [`IntervalLogWriterBuilder`] and the Python `hdrhistogram` package share: a header, then one
//! line per interval histogram, serialized as V2 + DEFLATE and base64-encoded. Give it weir
//! [`Histogram`]s (directly, from a [`Family`], or from a [`Registry`] by name and label values),
//! each with an optional tag, and call [`log_interval`](IntervalLogger::log_interval) as often as
//! you want an interval (once a second is usual).
//!
//! Each call snapshots every source, takes the [`delta_since`](HistogramSnapshot::delta_since)
//! that source's previous snapshot (weir's reader-side interval: writers are never paused or
//! reset, and no sample is lost or counted twice), converts it with
//! [`to_hdr`](HistogramSnapshot::to_hdr) and writes it with the interval's start and length.
//! Summing every interval of a source gives exactly what it recorded while it was logged.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use weir::export::hlog::IntervalLoggerBuilder;
//! use weir::{Histogram, ManualClock};
//!
//! let clock = ManualClock::new();
//! let latency = Histogram::new();
//! let mut log = IntervalLoggerBuilder::new()
//!     .clock(Arc::new(clock.clone()))
//!     .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
//!     .comment("checkout service")
//!     .build(Vec::new())?;
//! log.add_histogram(&latency, Some("checkout"))?;
//!
//! latency.record(1_200);
//! latency.record(3_400);
//! clock.advance(Duration::from_secs(1));
//! let written = log.log_interval()?;
//! assert_eq!(written[0].histogram().count(), 2);
//! assert_eq!(written[0].duration(), Duration::from_secs(1));
//!
//! let text = String::from_utf8(log.into_inner()).unwrap();
//! assert!(text.contains("#[BaseTime: 1700000000.000 (seconds since epoch)]\n"));
//! assert!(text.contains("\nTag=checkout,0.000,1.000,"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The log
//!
//! The header is written when the logger is built, in the order the Java writer uses: the
//! caller's comments, `#[Logged with weir <version>]`, `#[Histogram log format version 1.3]`,
//! `#[StartTime: ...]` and `#[BaseTime: ...]` (both the wall-clock start of the log, in seconds
//! since the Unix epoch; [`SystemTime::now`] unless
//! [`start_time`](IntervalLoggerBuilder::start_time) says otherwise), then the column legend.
//! Because a `BaseTime` is present, interval timestamps are seconds since the log's start, as
//! read on the logger's [`Clock`]: readers add `BaseTime` to get wall-clock times.
//!
//! Each interval line is `[Tag=<tag>,]<start>,<length>,<max>,<histogram>` with start and length
//! in seconds to the millisecond (the format's precision) and `max` the interval's largest value
//! (to its bucket's precision) in the histogram's own unit.
//!
//! # Intervals and time
//!
//! Each source keeps its own baseline snapshot and the clock reading taken with it. A source's
//! first interval starts when it was added (not when the log started), so a source added late
//! does not claim time it was not watched. Clock readings are taken after the snapshots: every
//! sample in an interval was recorded before the interval's end. Give the logger the clock the
//! rest of the program uses (for a registry: `registry.clock().clone()`) so that times agree;
//! with a [`ManualClock`](crate::ManualClock), logs are exactly reproducible.
//!
//! # Errors
//!
//! A line is built in memory first and handed to the writer with one `write_all`, then the writer
//! is flushed. If serializing or writing a source's line fails, that source's baseline does not
//! move: its samples stay pending and go into its next successful line (which then covers the
//! longer interval), so the log still never loses or double-counts a sample. Sources after the
//! failing one are left for the next call too. A writer that fails in the middle of `write_all`
//! may leave part of a line behind; readers stop at such a line.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializeError;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{
    IntervalLogWriterBuilder, IntervalLogWriterError, Tag,
};

use crate::{
    Clock, DeltaError, Family, Histogram, HistogramSnapshot, MetricKind, Registry, RegistryError,
    SharedClock, SystemClock,
};

/// The column legend line the Java writer puts after the header (readers skip it).
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// The interval log format version this module writes (tags and V2 + DEFLATE histograms).
const FORMAT_VERSION: &str = "1.3";

// === impl IntervalLoggerBuilder ===

/// Options for an [`IntervalLogger`]: header comments, clock and wall-clock start time.
///
/// ```
/// use weir::export::hlog::IntervalLoggerBuilder;
/// let log = IntervalLoggerBuilder::new().comment("load test #7").build(Vec::new())?;
/// assert!(log.get_ref().starts_with(b"#load test #7\n"));
/// # Ok::<(), weir::export::hlog::LogError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct IntervalLoggerBuilder {
    comments: Vec<String>,
    clock: Option<SharedClock>,
    start_time: Option<SystemTime>,
}

impl IntervalLoggerBuilder {
    /// A builder with no comments, a fresh [`SystemClock`] and the current wall-clock time.
    pub fn new() -> IntervalLoggerBuilder {
        IntervalLoggerBuilder::default()
    }

    /// Adds a comment line to the header (a comment holding `\n` becomes several lines).
    pub fn comment(mut self, text: &str) -> Self {
        self.comments.push(text.to_owned());
        self
    }

    /// The clock that times intervals (default: a [`SystemClock`] started at
    /// [`build`](Self::build)). Interval timestamps are its readings minus its reading at `build`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The wall-clock time the log starts at, written as its `StartTime` and `BaseTime`
    /// (default: [`SystemTime::now`] at [`build`](Self::build)). Set it to make a log
    /// byte-for-byte reproducible.
    pub fn start_time(mut self, start: SystemTime) -> Self {
        self.start_time = Some(start);
        self
    }

    /// Writes the header to `writer` and returns the logger, with no sources yet.
    ///
    /// Errors with [`LogError::Io`] if the header cannot be written or flushed.
    pub fn build<W: io::Write>(self, mut writer: W) -> Result<IntervalLogger<W>, LogError> {
        let clock: SharedClock = match self.clock {
            Some(c) => c,
            None => std::sync::Arc::new(SystemClock::new()),
        };
        let start = clock.now();
        let wall = self.start_time.unwrap_or_else(SystemTime::now);
        let mut header = IntervalLogWriterBuilder::new();
        for c in &self.comments {
            header.add_comment(c);
        }
        header
            .add_comment(&format!("[Logged with weir {}]", env!("CARGO_PKG_VERSION")))
            .add_comment(&format!("[Histogram log format version {FORMAT_VERSION}]"))
            .with_start_time(wall)
            .with_base_time(wall);
        let mut serializer = V2DeflateSerializer::new();
        let mut text = Vec::new();
        // Writing into a Vec cannot fail; the error is mapped all the same.
        header
            .begin_log_with(&mut text, &mut serializer)
            .map_err(LogError::Io)?;
        text.extend_from_slice(LEGEND.as_bytes());
        writer.write_all(&text).map_err(LogError::Io)?;
        writer.flush().map_err(LogError::Io)?;
        text.clear();
        Ok(IntervalLogger {
            writer,
            serializer,
            clock,
            start,
            sources: Vec::new(),
            line: text,
        })
    }
}

// === impl IntervalLogger ===

/// One logged histogram: its tag, the histogram, and its baseline.
struct Source {
    tag: Option<Box<str>>,
    histogram: Histogram,
    baseline: HistogramSnapshot,
    /// Clock reading taken with `baseline`.
    since: Duration,
}

/// Writes an HdrHistogram interval log of weir histograms to a [`std::io::Write`].
///
/// Built by [`IntervalLoggerBuilder::build`] (or [`IntervalLogger::new`] with the defaults);
/// see the [module docs](self) for the format and the timing rules.
pub struct IntervalLogger<W: io::Write> {
    writer: W,
    serializer: V2DeflateSerializer,
    clock: SharedClock,
    /// Clock reading at the log's start: interval timestamps count from it.
    start: Duration,
    sources: Vec<Source>,
    /// Reused buffer for one interval line.
    line: Vec<u8>,
}

impl<W: io::Write> fmt::Debug for IntervalLogger<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tags: Vec<Option<&str>> = self.sources.iter().map(|s| s.tag.as_deref()).collect();
        f.debug_struct("IntervalLogger")
            .field("writer", &std::any::type_name::<W>())
            .field("clock", &self.clock)
            .field("start", &self.start)
            .field("sources", &tags)
            .finish_non_exhaustive()
    }
}

impl<W: io::Write> IntervalLogger<W> {
    /// A logger with the default options (a [`SystemClock`], the current wall-clock time, no
    /// comments): writes the header to `writer`.
    pub fn new(writer: W) -> Result<IntervalLogger<W>, LogError> {
        IntervalLoggerBuilder::new().build(writer)
    }

    /// Logs `histogram` (a shared handle to it is kept) under `tag` from now on: its first
    /// interval starts now, and what it recorded before is not logged.
    ///
    /// Errors if the tag is not a valid log tag or is already in use (`None` counts as a tag:
    /// one untagged source at most).
    pub fn add_histogram(
        &mut self,
        histogram: &Histogram,
        tag: Option<&str>,
    ) -> Result<(), SourceError> {
        let tag = self.check_tag(tag)?;
        let baseline = histogram.snapshot();
        let since = self.clock.now();
        self.sources.push(Source {
            tag,
            histogram: histogram.clone(),
            baseline,
            since,
        });
        Ok(())
    }

    /// Logs the series of `family` with these label values (created if absent, as
    /// [`Family::with`] does), as [`add_histogram`](Self::add_histogram) does.
    pub fn add_family_series(
        &mut self,
        family: &Family<Histogram>,
        label_values: &[&str],
        tag: Option<&str>,
    ) -> Result<(), SourceError> {
        self.check_tag(tag)?;
        let histogram = family.with(label_values).map_err(SourceError::Registry)?;
        self.add_histogram(&histogram, tag)
    }

    /// Logs the series `name{label_values}` of `registry`, as
    /// [`add_histogram`](Self::add_histogram) does. The family must already be registered as a
    /// histogram family; the series is created if absent (as [`Family::with`] does).
    ///
    /// Finding the family's label names takes one [`Registry::snapshot`]: this is a setup
    /// call, not one for a hot path. Logging itself only snapshots the series.
    pub fn add_registry_series(
        &mut self,
        registry: &Registry,
        name: &str,
        label_values: &[&str],
        tag: Option<&str>,
    ) -> Result<(), SourceError> {
        self.check_tag(tag)?;
        let snapshot = registry.snapshot();
        let Some(family) = snapshot.family(name) else {
            return Err(SourceError::UnknownFamily {
                name: name.to_owned(),
            });
        };
        if family.kind != MetricKind::Histogram {
            return Err(SourceError::NotAHistogram {
                name: name.to_owned(),
                kind: family.kind,
            });
        }
        let label_names: Vec<&str> = family.label_names.iter().map(|n| &**n).collect();
        let family = registry
            .histogram_family(name, &family.help, &label_names)
            .map_err(SourceError::Registry)?;
        self.add_family_series(&family, label_values, tag)
    }

    /// Writes one interval line per source, in the order they were added: what each recorded
    /// since its previous line (or since it was added), then flushes the writer.
    ///
    /// Returns what was written, for the caller's own use (checks, a summary line). A source
    /// whose line fails stays pending; see the [module docs](self#errors).
    pub fn log_interval(&mut self) -> Result<Vec<LoggedInterval>, LogError> {
        let snapshots: Vec<HistogramSnapshot> = self
            .sources
            .iter()
            .map(|s| s.histogram.snapshot())
            .collect();
        let now = self.clock.now();
        let mut written = Vec::with_capacity(self.sources.len());
        let result = self.write_lines(snapshots, now, &mut written);
        // Flush what was written even when a later line failed.
        let flushed = self.writer.flush().map_err(LogError::Io);
        result.and(flushed).map(|()| written)
    }

    /// Writes one line per source from its new `snapshot`; stops at the first failure, leaving
    /// that source and the ones after it pending.
    fn write_lines(
        &mut self,
        snapshots: Vec<HistogramSnapshot>,
        now: Duration,
        written: &mut Vec<LoggedInterval>,
    ) -> Result<(), LogError> {
        for (source, snapshot) in self.sources.iter_mut().zip(snapshots) {
            let delta = snapshot
                .delta_since(&source.baseline)
                .map_err(|e| LogError::Delta {
                    tag: source.tag.as_deref().map(str::to_owned),
                    source: e,
                })?;
            // Guard against a clock that goes backwards: an interval never has a negative length.
            let end = now.max(source.since);
            let start = source.since.saturating_sub(self.start);
            let duration = end - source.since;
            self.line.clear();
            {
                let tag = source.tag.as_deref().and_then(Tag::new);
                let mut w = IntervalLogWriterBuilder::new()
                    .begin_log_with(&mut self.line, &mut self.serializer)
                    .map_err(LogError::Io)?;
                w.write_histogram(&delta.to_hdr(), start, duration, tag)
                    .map_err(|e| match e {
                        IntervalLogWriterError::SerializeError(e) => LogError::Serialize {
                            tag: source.tag.as_deref().map(str::to_owned),
                            source: e,
                        },
                        IntervalLogWriterError::IoError(e) => LogError::Io(e),
                    })?;
            }
            self.writer.write_all(&self.line).map_err(LogError::Io)?;
            source.baseline = snapshot;
            source.since = end;
            written.push(LoggedInterval {
                tag: source.tag.clone(),
                start,
                duration,
                histogram: delta,
            });
        }
        Ok(())
    }

    /// Flushes the writer.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.writer.flush().map_err(LogError::Io)
    }

    /// The clock reading the log started at (interval timestamps count from it).
    pub fn start(&self) -> Duration {
        self.start
    }

    /// The tags of the sources, in the order they were added.
    pub fn tags(&self) -> impl Iterator<Item = Option<&str>> {
        self.sources.iter().map(|s| s.tag.as_deref())
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    /// The writer, mutably (writing to it directly can corrupt the log).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// Gives the writer back. Nothing more is written: call
    /// [`log_interval`](Self::log_interval) first to log the last partial interval.
    pub fn into_inner(self) -> W {
        self.writer
    }

    fn check_tag(&self, tag: Option<&str>) -> Result<Option<Box<str>>, SourceError> {
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(SourceError::InvalidTag { tag: t.to_owned() });
        }
        if self.sources.iter().any(|s| s.tag.as_deref() == tag) {
            return Err(SourceError::DuplicateTag {
                tag: tag.map(str::to_owned),
            });
        }
        Ok(tag.map(Box::from))
    }
}

/// Whether `tag` can be written and read back by every interval log reader: not empty, and no
/// comma, whitespace or control character (the format's separators, and what the Java and
/// Python readers split on).
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && !tag
            .chars()
            .any(|c| c == ',' || c.is_whitespace() || c.is_control())
        && Tag::new(tag).is_some()
}

// === impl LoggedInterval ===

/// One interval line as [`IntervalLogger::log_interval`] wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedInterval {
    tag: Option<Box<str>>,
    start: Duration,
    duration: Duration,
    histogram: HistogramSnapshot,
}

impl LoggedInterval {
    /// The source's tag.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// When the interval started, since the log's start (written rounded to the millisecond).
    pub fn start(&self) -> Duration {
        self.start
    }

    /// The interval's length (written rounded to the millisecond).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// What the source recorded in the interval (the delta that was written).
    pub fn histogram(&self) -> &HistogramSnapshot {
        &self.histogram
    }

    /// The delta, by value.
    pub fn into_histogram(self) -> HistogramSnapshot {
        self.histogram
    }
}

// === errors ===

/// Why writing the log (its header, an interval, a flush) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// The writer failed. Check the destination (disk full, closed pipe); sources whose line
    /// was not written stay pending and are written by the next successful call.
    Io(io::Error),
    /// `hdrhistogram` could not serialize an interval histogram (V2 + DEFLATE). The source's
    /// samples stay pending; this points to a bug, so please report it.
    Serialize {
        /// The source's tag.
        tag: Option<String>,
        /// The serializer's error.
        source: V2DeflateSerializeError,
    },
    /// A source's interval could not be computed from its snapshots. A logger takes each
    /// source's snapshots one after the other on one thread, so this does not happen with
    /// weir's histograms; it is reported rather than hidden. The source stays pending.
    Delta {
        /// The source's tag.
        tag: Option<String>,
        /// Why the delta failed.
        source: DeltaError,
    },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io(e) => write!(f, "writing the interval log failed: {e}"),
            LogError::Serialize { tag, source } => write!(
                f,
                "serializing the interval histogram of {} failed: {source}",
                DisplayTag(tag.as_deref())
            ),
            LogError::Delta { tag, source } => write!(
                f,
                "computing the interval of {} failed: {source}",
                DisplayTag(tag.as_deref())
            ),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Io(e) => Some(e),
            LogError::Serialize { source, .. } => Some(source),
            LogError::Delta { source, .. } => Some(source),
        }
    }
}

/// Why a source could not be added to an [`IntervalLogger`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceError {
    /// Tags must be non-empty and hold no comma, whitespace or control character (they would
    /// break the log's line format); choose another tag.
    InvalidTag {
        /// The rejected tag.
        tag: String,
    },
    /// Another source already uses this tag (`None`: another untagged source); readers could
    /// not tell the two apart. Give each source its own tag.
    DuplicateTag {
        /// The tag in use.
        tag: Option<String>,
    },
    /// The registry has no family of this name; register it first (for example with
    /// [`Registry::histogram_family`]).
    UnknownFamily {
        /// The name looked up.
        name: String,
    },
    /// The family is not a histogram family; only histograms can be logged.
    NotAHistogram {
        /// The family's name.
        name: String,
        /// What it is.
        kind: MetricKind,
    },
    /// The registry refused the series (wrong number of label values, for example); see the
    /// error's own remedy.
    Registry(RegistryError),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::InvalidTag { tag } => write!(
                f,
                "invalid interval log tag {tag:?}: a tag must be non-empty and hold no comma, \
                 whitespace or control character"
            ),
            SourceError::DuplicateTag { tag } => {
                write!(f, "{} is already logged", DisplayTag(tag.as_deref()))
            }
            SourceError::UnknownFamily { name } => {
                write!(f, "no metric family named {name:?} is registered")
            }
            SourceError::NotAHistogram { name, kind } => write!(
                f,
                "metric family {name:?} is a {}, not a histogram",
                kind.as_str()
            ),
            SourceError::Registry(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

/// Formats a source's tag for messages.
struct DisplayTag<'a>(Option<&'a str>);

impl fmt::Display for DisplayTag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, "source tagged {t:?}"),
            None => f.write_str("the untagged source"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    use base64::Engine as _;

    use super::*;
    use crate::ManualClock;

    fn epoch(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn logger(clock: &ManualClock) -> IntervalLogger<Vec<u8>> {
        IntervalLoggerBuilder::new()
            .clock(Arc::new(clock.clone()))
            .start_time(epoch(1_700_000_000))
            .build(Vec::new())
            .unwrap()
    }

    #[test]
    fn header_is_what_java_writes() {
        let clock = ManualClock::new();
        let log = IntervalLoggerBuilder::new()
            .clock(Arc::new(clock))
            .start_time(epoch(1_700_000_000) + Duration::from_millis(250))
            .comment("one\ntwo")
            .build(Vec::new())
            .unwrap();
        let text = String::from_utf8(log.into_inner()).unwrap();
        let expected = format!(
            "#one\n#two\n#[Logged with weir {}]\n#[Histogram log format version 1.3]\n\
             #[StartTime: 1700000000.250 (seconds since epoch)]\n\
             #[BaseTime: 1700000000.250 (seconds since epoch)]\n{LEGEND}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        let entries: Vec<_> = IntervalLogIterator::new(text.as_bytes())
            .map(Result::unwrap)
            .collect();
        let t = Duration::new(1_700_000_000, 250_000_000);
        assert_eq!(entries, vec![LogEntry::StartTime(t), LogEntry::BaseTime(t)]);
    }

    #[test]
    fn tags_are_checked() {
        let clock = ManualClock::new();
        let mut log = logger(&clock);
        let h = Histogram::new();
        for bad in ["", "a,b", "a b", "a\tb", "a\nb", "a\rb", "a\u{0}b"] {
            assert_eq!(
                log.add_histogram(&h, Some(bad)),
                Err(SourceError::InvalidTag {
                    tag: bad.to_owned()
                })
            );
        }
        log.add_histogram(&h, None).unwrap();
        log.add_histogram(&h, Some("a=b;c/\u{e9}")).unwrap();
        assert_eq!(
            log.add_histogram(&h, None),
            Err(SourceError::DuplicateTag { tag: None })
        );
        assert_eq!(
            log.add_histogram(&h, Some("a=b;c/\u{e9}")),
            Err(SourceError::DuplicateTag {
                tag: Some("a=b;c/\u{e9}".to_owned())
            })
        );
        assert_eq!(
            log.tags().collect::<Vec<_>>(),
            vec![None, Some("a=b;c/\u{e9}")]
        );
    }

    #[test]
    fn registry_lookup_errors() {
        let registry = Registry::new();
        registry.counter("jobs_total", "", &[]).unwrap();
        registry
            .histogram_family("latency", "", &["route"])
            .unwrap();
        let clock = ManualClock::new();
        let mut log = logger(&clock);
        assert_eq!(
            log.add_registry_series(&registry, "nope", &[], None),
            Err(SourceError::UnknownFamily {
                name: "nope".to_owned()
            })
        );
        assert_eq!(
            log.add_registry_series(&registry, "jobs_total", &[], None),
            Err(SourceError::NotAHistogram {
                name: "jobs_total".to_owned(),
                kind: MetricKind::Counter
            })
        );
        assert!(matches!(
            log.add_registry_series(&registry, "latency", &[], None),
            Err(SourceError::Registry(RegistryError::LabelCount { .. }))
        ));
        log.add_registry_series(&registry, "latency", &["/a"], Some("a"))
            .unwrap();
        // The series is the registry's own: records through the family show up in the log.
        registry
            .histogram_family("latency", "", &["route"])
            .unwrap()
            .with(&["/a"])
            .unwrap()
            .record(42);
        clock.advance(Duration::from_secs(1));
        let written = log.log_interval().unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].histogram().count(), 1);
    }

    #[test]
    fn a_late_source_starts_when_added() {
        let clock = ManualClock::new();
        let mut log = logger(&clock);
        let (a, b) = (Histogram::new(), Histogram::new());
        log.add_histogram(&a, Some("a")).unwrap();
        clock.advance(Duration::from_millis(1_500));
        b.record(7); // before b is added: not logged
        log.add_histogram(&b, Some("b")).unwrap();
        b.record(9);
        clock.advance(Duration::from_millis(500));
        let written = log.log_interval().unwrap();
        assert_eq!(written[0].start(), Duration::ZERO);
        assert_eq!(written[0].duration(), Duration::from_secs(2));
        assert_eq!(written[1].start(), Duration::from_millis(1_500));
        assert_eq!(written[1].duration(), Duration::from_millis(500));
        assert_eq!(written[1].histogram().count(), 1);
        let text = String::from_utf8(log.into_inner()).unwrap();
        assert!(text.contains("\nTag=a,0.000,2.000,0.000,HISTF"), "{text}");
        assert!(text.contains("\nTag=b,1.500,0.500,9.000,HISTF"), "{text}");
    }

    /// A writer that fails the next `n` writes.
    struct Flaky {
        out: Vec<u8>,
        fail: usize,
    }

    impl io::Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(io::Error::other("disk full"));
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_leaves_the_samples_pending() {
        let clock = ManualClock::new();
        let mut log = IntervalLoggerBuilder::new()
            .clock(Arc::new(clock.clone()))
            .start_time(epoch(0))
            .build(Flaky {
                out: Vec::new(),
                fail: 0,
            })
            .unwrap();
        let h = Histogram::new();
        log.add_histogram(&h, None).unwrap();
        h.record_n(100, 3);
        clock.advance(Duration::from_secs(1));
        log.get_mut().fail = 1;
        let err = log.log_interval().unwrap_err();
        assert!(matches!(err, LogError::Io(_)), "{err}");
        assert!(err.to_string().contains("disk full"));
        h.record(200);
        clock.advance(Duration::from_secs(1));
        let written = log.log_interval().unwrap();
        assert_eq!(written[0].start(), Duration::ZERO);
        assert_eq!(written[0].duration(), Duration::from_secs(2));
        assert_eq!(written[0].histogram().count(), 4);

        let text = log.into_inner().out;
        let mut d = Deserializer::new();
        let counts: Vec<u64> = IntervalLogIterator::new(&text)
            .filter_map(|e| match e.unwrap() {
                LogEntry::Interval(i) => Some(i),
                _ => None,
            })
            .map(|i| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: hdrhistogram::Histogram<u64> = d.deserialize(&mut bytes.as_slice()).unwrap();
                h.len()
            })
            .collect();
        assert_eq!(counts, vec![4]);
    }

    #[test]
    fn errors_display_and_chain() {
        use std::error::Error as _;
        let e = LogError::Delta {
            tag: Some("x".into()),
            source: DeltaError::Unrelated,
        };
        assert_eq!(
            e.to_string(),
            "computing the interval of source tagged \"x\" failed: \
             baseline snapshot comes from a different histogram"
        );
        assert!(e.source().is_some());
        let e = SourceError::DuplicateTag { tag: None };
        assert_eq!(e.to_string(), "the untagged source is already logged");
        assert!(e.source().is_none());
    }
}
