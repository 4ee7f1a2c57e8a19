//! One [`Point`] to one line of line protocol.
//!
//! Every line is built with `influxdb_line_protocol`'s typestate [`LineProtocolBuilder`], which
//! escapes commas, spaces, equals signs, double quotes and backslashes by construction and
//! cannot produce a line without a field. What it cannot guard against is refused before a
//! single byte is written, so a call either appends one whole line or nothing:
//!
//! - whatever [`Point::validate`] refuses: line breaks (the builder does not escape them, and a
//!   newline in a name would start a second, injected line), a leading `#` (a comment line),
//!   empty names, non-finite floats, absurd sizes;
//! - a backslash in a measurement, tag key, tag value or field key. The builder writes it as
//!   `\\`, which the Rust parser (and InfluxDB 3) reads back as one backslash, but the Go
//!   parser of InfluxDB 1.x and 2.x does not unescape `\\` in names and would store two
//!   (`tests/influx_v1.rs` pins this against the real server). A name with a backslash before
//!   a comma, space or equals sign, or at its end, has no encoding that 1.x reads back at all.
//!   Refusing it (`unsafe_name`, dead-lettered and replayable) beats silently storing a
//!   different series. Backslashes in string field *values* are fine: both parsers unescape
//!   `\\` and `\"` there.
//!
//! Floats are written with Rust's shortest round-trip `Display` (`3` for `3.0`, which line
//! protocol reads as a float because it has no `i` suffix), integers with the `i` suffix.

use std::collections::HashMap;
use std::fmt;

use bytes::{Bytes, BytesMut};
use influxdb_line_protocol::LineProtocolBuilder;
use influxdb_line_protocol::builder;
use sluice_core::batch::ByteSize;
use sluice_core::point::{FieldRef, InvalidPoint, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Rejection};

use crate::api::Precision;

/// Why a point was not encoded. [`EncodeError::reason`] is the label it is counted and
/// dead-lettered under.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The point fails [`Point::validate`].
    #[error(transparent)]
    Invalid(#[from] InvalidPoint),
    /// A name holds a backslash, which InfluxDB 1.x and 2.x would not read back unchanged.
    #[error(
        "{what} {name:?} contains a backslash, which InfluxDB 1.x/2.x cannot read back unchanged"
    )]
    Backslash { what: &'static str, name: String },
}

impl Rejection for EncodeError {
    fn reason(&self) -> Reason {
        match self {
            EncodeError::Invalid(invalid) => invalid.reason(),
            EncodeError::Backslash { .. } => Reason::UnsafeName,
        }
    }
}

/// Appends one line, newline included, to `buf`; on error `buf` is left as it was.
///
/// Every byte comes from the builder. The metrics path uses [`LineEncoder`], which writes the
/// same bytes faster.
pub fn encode_point(
    buf: &mut Vec<u8>,
    point: &Point,
    precision: Precision,
    limits: &PointLimits,
) -> Result<(), EncodeError> {
    let point = point.borrowed();
    check(&point, limits)?;
    build_line(buf, &point, precision);
    Ok(())
}

/// Whatever would make a line that does not read back as the point.
fn check(point: &PointRef<'_>, limits: &PointLimits) -> Result<(), EncodeError> {
    point.validate(limits)?;
    refuse_backslashes(point)?;
    if point.fields.is_empty() {
        // validate() refuses an empty field set already; kept so that no path writes half a line.
        return Err(InvalidPoint::Empty { what: "field set" }.into());
    }
    Ok(())
}

/// Writes a checked point, every byte through the builder.
fn build_line(buf: &mut Vec<u8>, point: &PointRef<'_>, precision: Precision) {
    let mut fields = point.fields.iter();
    let Some((first_key, first_value)) = fields.next() else {
        return;
    };
    let mut line = LineProtocolBuilder::new_with(&mut *buf).measurement(&point.measurement);
    for (key, value) in &point.tags {
        line = line.tag(key, value);
    }
    let mut line = line.field(first_key, AnyField(first_value));
    for (key, value) in fields {
        line = line.field(key, AnyField(value));
    }
    line.timestamp(precision.from_nanos(point.timestamp))
        .close_line();
}

/// One line of line protocol, newline included, as [`LineEncoder::encode_line`] cut it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line(Bytes);

impl Line {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl ByteSize for Line {
    fn byte_size(&self) -> usize {
        self.0.len()
    }
}

/// The size of the shared buffers lines are cut from.
const LINE_CHUNK_BYTES: usize = 64 * 1024;

/// How many series' prefixes a [`LineEncoder`] remembers before it starts over: about 300 bytes
/// each, so a few MiB at most.
pub const MAX_REMEMBERED_SERIES: usize = 16_384;

/// Encodes points into line protocol, remembering what the builder wrote for each series.
///
/// The builder escapes one character at a time through `fmt::Write`, which costs more than
/// everything else on the metrics path put together. A metrics stream repeats the same series
/// (measurement, tags, field key) over and over with only the value and time changing, so the
/// first line of a series is written by the builder and its prefix, up to the value, is
/// remembered; the next lines of that series copy the prefix and format only the value (with
/// the crate's own field formatting) and the timestamp. The output is byte for byte what
/// [`encode_point`] writes (a property test holds it to that).
///
/// Only single-field points are remembered (every Diamond metric is one); others go through the
/// builder each time. When [`MAX_REMEMBERED_SERIES`] are remembered, the memory starts over, so
/// a stream with more series than that pays the builder's price for the excess.
pub struct LineEncoder {
    precision: Precision,
    limits: PointLimits,
    /// Where [`encode_line`](Self::encode_line) cuts its lines from.
    chunk: BytesMut,
    /// A series' identity (see [`series_identity`]) to the builder's bytes before its value.
    prefixes: HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::FixedState>,
    identity: Vec<u8>,
    line: Vec<u8>,
}

impl fmt::Debug for LineEncoder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LineEncoder")
            .field("precision", &self.precision)
            .field("remembered_series", &self.prefixes.len())
            .finish_non_exhaustive()
    }
}

impl LineEncoder {
    pub fn new(precision: Precision, limits: PointLimits) -> Self {
        Self {
            precision,
            limits,
            chunk: BytesMut::new(),
            prefixes: HashMap::default(),
            identity: Vec::new(),
            line: Vec::new(),
        }
    }

    /// One line, newline included, cut from a large shared buffer: lines cost no allocation of
    /// their own, and a buffer is freed when the last of its lines is. A point validated with
    /// this encoder's limits is not validated again.
    pub fn encode_line(&mut self, point: &ValidPoint<'_>) -> Result<Line, EncodeError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let encoded = if *point.limits() == self.limits {
            self.encode_valid(&mut line, point)
        } else {
            self.encode(&mut line, point)
        };
        if encoded.is_ok() {
            if self.chunk.capacity() < line.len() {
                self.chunk.reserve(LINE_CHUNK_BYTES.max(line.len()));
            }
            self.chunk.extend_from_slice(&line);
        }
        self.line = line;
        encoded.map(|()| Line(self.chunk.split().freeze()))
    }

    /// Appends one line, newline included, to `buf`; on error `buf` is left as it was.
    pub fn encode(&mut self, buf: &mut Vec<u8>, point: &PointRef<'_>) -> Result<(), EncodeError> {
        point.validate(&self.limits)?;
        self.encode_valid(buf, point)
    }

    /// Writes a point that passed [`PointRef::validate`], unless a name has a backslash. A
    /// remembered series was checked for those when it was first written, so its later lines
    /// are not checked again.
    fn encode_valid(&mut self, buf: &mut Vec<u8>, point: &PointRef<'_>) -> Result<(), EncodeError> {
        let [(field_key, value)] = point.fields.as_slice() else {
            refuse_backslashes(point)?;
            build_line(buf, point, self.precision);
            return Ok(());
        };
        let timestamp = self.precision.from_nanos(point.timestamp);
        series_identity(&mut self.identity, point, field_key);
        if let Some(prefix) = self.prefixes.get(self.identity.as_slice()) {
            buf.extend_from_slice(prefix);
            write_value_and_timestamp(buf, value, timestamp);
            return Ok(());
        }

        refuse_backslashes(point)?;
        let start = buf.len();
        build_line(buf, point, self.precision);
        let built = buf.len() - start;
        // What the builder wrote after the prefix is what `write_value_and_timestamp` writes;
        // the prefix is remembered only if that holds, so a hit always matches the builder.
        write_value_and_timestamp(buf, value, timestamp);
        let tail = buf.len() - start - built;
        let (line, expected_tail) = buf[start..].split_at(built);
        let prefix_len = line.len().checked_sub(tail);
        if let Some(prefix_len) = prefix_len.filter(|&len| line[len..] == *expected_tail) {
            if self.prefixes.len() >= MAX_REMEMBERED_SERIES {
                self.prefixes.clear();
            }
            self.prefixes
                .insert(self.identity.as_slice().into(), line[..prefix_len].into());
        }
        buf.truncate(start + built);
        Ok(())
    }
}

/// Measurement, tag keys and values, and the field key, each followed by a newline: no name can
/// hold one ([`Point::validate`] refuses it), so two series have the same identity only if they
/// are the same series.
fn series_identity(identity: &mut Vec<u8>, point: &PointRef<'_>, field_key: &str) {
    identity.clear();
    identity.extend_from_slice(point.measurement.as_bytes());
    identity.push(b'\n');
    for (key, value) in &point.tags {
        identity.extend_from_slice(key.as_bytes());
        identity.push(b'\n');
        identity.extend_from_slice(value.as_bytes());
        identity.push(b'\n');
    }
    identity.extend_from_slice(field_key.as_bytes());
    identity.push(b'\n');
}

/// The end of a line: the value as the crate formats field values, then ` <timestamp>\n`.
fn write_value_and_timestamp(buf: &mut Vec<u8>, value: &FieldRef<'_>, timestamp: i64) {
    use std::fmt::Write;
    let mut out = FmtVec(buf);
    let written = match value {
        FieldRef::Integer(number) => write!(out, "{}", Formatted(number)),
        FieldRef::Float(number) => write!(out, "{}", Formatted(number)),
        FieldRef::Boolean(flag) => write!(out, "{}", Formatted(flag)),
        FieldRef::String(text) => write!(out, "{}", Formatted(&text.as_ref())),
    };
    // Writing into a Vec does not fail.
    debug_assert!(written.is_ok());
    buf.push(b' ');
    buf.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
    buf.push(b'\n');
}

/// `fmt::Write` straight into the buffer: cheaper than `io::Write`'s adapter for short writes.
struct FmtVec<'b>(&'b mut Vec<u8>);

impl fmt::Write for FmtVec<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// Shows a value with the line-protocol crate's own field formatting.
struct Formatted<'v, V: builder::FieldValue>(&'v V);

impl<V: builder::FieldValue> fmt::Display for Formatted<'_, V> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        builder::FieldValue::fmt(self.0, formatter)
    }
}

/// A field of any type, formatted as the line-protocol crate formats that type. The builder's
/// first field and its next ones are methods of two typestates, so one value type that takes
/// any field is what lets a line pass both without a `match` per state.
struct AnyField<'v>(&'v FieldRef<'v>);

impl builder::FieldValue for AnyField<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FieldRef::Integer(number) => builder::FieldValue::fmt(number, formatter),
            FieldRef::Float(number) => builder::FieldValue::fmt(number, formatter),
            FieldRef::Boolean(flag) => builder::FieldValue::fmt(flag, formatter),
            FieldRef::String(text) => builder::FieldValue::fmt(&text.as_ref(), formatter),
        }
    }
}

fn refuse_backslashes(point: &PointRef<'_>) -> Result<(), EncodeError> {
    let refuse = |what: &'static str, name: &str| {
        if name.as_bytes().contains(&b'\\') {
            Err(EncodeError::Backslash {
                what,
                name: name.chars().take(64).collect(),
            })
        } else {
            Ok(())
        }
    };
    refuse("measurement", &point.measurement)?;
    for (key, value) in &point.tags {
        refuse("tag key", key)?;
        refuse("tag value", value)?;
    }
    for (key, _) in &point.fields {
        refuse("field key", key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use influxdb_line_protocol::{FieldValue as ParsedValue, parse_lines, split_lines};
    use proptest::prelude::*;

    use sluice_core::point::FieldValue;

    use super::*;

    fn encode(point: &Point, precision: Precision) -> Result<String, EncodeError> {
        let mut buf = Vec::new();
        encode_point(&mut buf, point, precision, &PointLimits::default())?;
        Ok(String::from_utf8(buf).expect("line protocol is utf-8"))
    }

    fn point(measurement: &str, tags: &[(&str, &str)], fields: &[(&str, FieldValue)]) -> Point {
        Point {
            measurement: measurement.to_owned(),
            tags: tags
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            fields: fields
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
            timestamp: 1_466_000_000_123_456_789,
        }
    }

    #[test]
    fn exact_bytes_of_every_field_type_and_escape() {
        let point = point(
            "cpu total,user",
            &[("host name", "h=1,a"), ("dc", "eu \"west\"")],
            &[
                ("value", FieldValue::Float(3.0)),
                ("ratio", FieldValue::Float(-0.25)),
                ("count", FieldValue::Integer(-42)),
                ("up", FieldValue::Boolean(true)),
                ("note key", FieldValue::String("say \"hi\"\nC:\\tmp".into())),
            ],
        );
        assert_eq!(
            encode(&point, Precision::Nanoseconds).expect("encodes"),
            "cpu\\ total\\,user,dc=eu\\ \"west\",host\\ name=h\\=1\\,a \
             count=-42i,note\\ key=\"say \\\"hi\\\"\nC:\\\\tmp\",ratio=-0.25,up=true,value=3 \
             1466000000123456789\n"
        );
    }

    #[test]
    fn timestamps_are_written_in_the_chosen_precision() {
        let point = Point::with_value("m", 1.5, 1_466_000_000_123_456_789);
        let cases = [
            (Precision::Nanoseconds, "m value=1.5 1466000000123456789\n"),
            (Precision::Microseconds, "m value=1.5 1466000000123456\n"),
            (Precision::Milliseconds, "m value=1.5 1466000000123\n"),
            (Precision::Seconds, "m value=1.5 1466000000\n"),
        ];
        for (precision, expected) in cases {
            assert_eq!(encode(&point, precision).expect("encodes"), expected);
        }
    }

    #[test]
    fn lines_append_to_what_the_buffer_holds() {
        let mut buf = b"a value=1 1\n".to_vec();
        encode_point(
            &mut buf,
            &Point::with_value("b", 2.0, 2),
            Precision::Nanoseconds,
            &PointLimits::default(),
        )
        .expect("encodes");
        assert_eq!(buf, b"a value=1 1\nb value=2 2\n");
    }

    #[test]
    fn refused_points_leave_the_buffer_untouched_and_say_why() {
        let cases = [
            (
                point("a\nb", &[], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("#m", &[], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("m", &[("t", "v\r")], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("m", &[], &[("f", FieldValue::Float(f64::NAN))]),
                "not_finite",
            ),
            (point("m", &[], &[]), "empty_name"),
            (
                point("C:\\", &[], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("m", &[("dir\\", "x")], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("m", &[("dir", "C:\\tmp")], &[("f", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
            (
                point("m", &[], &[("a\\b", FieldValue::Integer(1))]),
                "unsafe_name",
            ),
        ];
        for (point, reason) in cases {
            let mut buf = b"kept\n".to_vec();
            let error = encode_point(
                &mut buf,
                &point,
                Precision::Nanoseconds,
                &PointLimits::default(),
            )
            .expect_err("must be refused");
            assert_eq!(error.reason(), reason, "{point:?}: {error}");
            assert_eq!(buf, b"kept\n");
        }
    }

    #[test]
    fn a_backslash_in_a_string_value_is_written_escaped() {
        let point = point("m", &[], &[("path", FieldValue::String("C:\\".into()))]);
        assert_eq!(
            encode(&point, Precision::Seconds).expect("encodes"),
            "m path=\"C:\\\\\" 1466000000\n"
        );
    }

    // --- properties ---------------------------------------------------------------------------

    /// Characters that matter to line protocol, weighted up against the rest of unicode, and
    /// now and then one that the encoder refuses in a name (about one name in ten).
    ///
    /// Tabs and NULs are left out of names: InfluxDB 1.x and 2.x (the servers this sink writes
    /// to) store them literally, and the builder rightly leaves them alone, but the Rust parser
    /// used as the oracle here reads a tab as a separator and refuses a NUL in a measurement.
    /// `tabs_and_nuls_stay_on_one_line` covers them.
    fn name_char() -> impl Strategy<Value = char> {
        prop_oneof![
            40 => any::<char>().prop_filter("refused or not parseable by the oracle", |c| {
                !matches!(c, '\n' | '\r' | '\\' | '\t' | '\0')
            }),
            60 => prop::sample::select(vec![
                ' ', ',', '=', '"', '#', '\'', 'a', 'Z', '0', '-', '.', 'é', 'ß', '中', '😀',
                '\u{200b}',
            ]),
            1 => prop::sample::select(vec!['\\', '\n', '\r']),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(name_char(), 1..12).prop_map(String::from_iter)
    }

    fn field_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<i64>().prop_map(FieldValue::Integer),
            any::<f64>().prop_map(FieldValue::Float),
            any::<bool>().prop_map(FieldValue::Boolean),
            string_value().prop_map(FieldValue::String),
        ]
    }

    /// String field values may hold anything; quotes, backslashes and line breaks are what the
    /// builder must escape (or, for line breaks, keep inside the quotes).
    fn string_value() -> impl Strategy<Value = String> {
        let char = prop_oneof![
            2 => any::<char>(),
            3 => prop::sample::select(vec!['"', '\\', '\n', '\r', '\t', ' ', ',', '=', 'x']),
        ];
        prop::collection::vec(char, 0..16).prop_map(String::from_iter)
    }

    fn arbitrary_point() -> impl Strategy<Value = Point> {
        (
            name(),
            prop::collection::btree_map(name(), name(), 0..4),
            prop::collection::btree_map(name(), field_value(), 1..4),
            any::<i64>(),
        )
            .prop_map(|(measurement, tags, fields, timestamp)| Point {
                measurement,
                tags,
                fields,
                timestamp,
            })
    }

    fn precision() -> impl Strategy<Value = Precision> {
        prop::sample::select(vec![
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
        ])
    }

    fn same_value(parsed: &ParsedValue<'_>, original: &FieldValue) -> bool {
        match (parsed, original) {
            (ParsedValue::I64(parsed), FieldValue::Integer(original)) => parsed == original,
            (ParsedValue::F64(parsed), FieldValue::Float(original)) => {
                parsed.to_bits() == original.to_bits()
            }
            (ParsedValue::Boolean(parsed), FieldValue::Boolean(original)) => parsed == original,
            // The builder's own tests mention a parser issue decoding escaped double quotes in
            // string values; in influxdb-line-protocol 2.0.0 they decode correctly (this
            // property writes plenty of them), so string values need no restriction.
            (ParsedValue::String(parsed), FieldValue::String(original)) => {
                parsed.as_str() == original
            }
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The injection property: whatever the names hold, the encoder either refuses the
        /// point or writes exactly one line that parses back to the same point.
        #[test]
        fn encoded_points_parse_back_to_one_identical_line(
            point in arbitrary_point(),
            precision in precision(),
        ) {
            let mut buf = Vec::new();
            match encode_point(&mut buf, &point, precision, &PointLimits::default()) {
                Err(error) => {
                    prop_assert!(buf.is_empty());
                    let names_have_a_backslash = point.measurement.contains('\\')
                        || point.tags.iter().any(|(k, v)| k.contains('\\') || v.contains('\\'))
                        || point.fields.keys().any(|k| k.contains('\\'));
                    prop_assert!(
                        point.validate(&PointLimits::default()).is_err()
                            || names_have_a_backslash,
                        "refused a valid point: {}", error
                    );
                }
                Ok(()) => {
                    let text = std::str::from_utf8(&buf).expect("utf-8");
                    prop_assert!(text.ends_with('\n'));
                    prop_assert_eq!(split_lines(text.trim_end_matches('\n')).count(), 1);
                    let lines: Vec<_> = parse_lines(text).collect();
                    prop_assert_eq!(lines.len(), 1, "{:?}", text);
                    let line = match &lines[0] {
                        Ok(line) => line,
                        Err(error) => {
                            return Err(TestCaseError::fail(format!("{error}: {text:?}")));
                        }
                    };
                    prop_assert_eq!(line.series.measurement.as_str(), point.measurement.as_str());
                    let tags: BTreeMap<String, String> = line
                        .series
                        .tag_set
                        .iter()
                        .flatten()
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect();
                    prop_assert_eq!(&tags, &point.tags);
                    prop_assert_eq!(line.field_set.len(), point.fields.len());
                    for (key, value) in &line.field_set {
                        let original = point.fields.get(key.as_str());
                        prop_assert!(
                            original.is_some_and(|original| same_value(value, original)),
                            "field {:?}: parsed {:?}, wrote {:?} in {:?}", key, value, original, text
                        );
                    }
                    prop_assert_eq!(line.timestamp, Some(precision.from_nanos(point.timestamp)));
                }
            }
        }

        /// The line encoder's remembered prefixes write exactly what the builder writes, on the
        /// first line of a series and on every later one, and refuse exactly what it refuses.
        #[test]
        fn the_line_encoder_writes_what_the_builder_writes(
            series in proptest::collection::vec(arbitrary_point(), 1..6),
            values in proptest::collection::vec(field_value(), 1..12),
            precision in precision(),
        ) {
            let limits = PointLimits::default();
            let mut encoder = LineEncoder::new(precision, limits);
            for (index, value) in values.into_iter().enumerate() {
                let mut point = series[index % series.len()].clone();
                if let Some(key) = point.fields.keys().next().cloned() {
                    point.fields.insert(key, value);
                }
                point.timestamp = point.timestamp.wrapping_add(index as i64);
                let (mut expected, mut written) = (b"x\n".to_vec(), b"x\n".to_vec());
                let built = encode_point(&mut expected, &point, precision, &limits);
                let encoded = encoder.encode(&mut written, &point.borrowed());
                prop_assert_eq!(built.is_ok(), encoded.is_ok());
                prop_assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&expected));
            }
        }

        /// Spaces, commas, `=` and tabs stay on one line; a NUL, which the builder cannot escape
        /// and InfluxDB's parser refuses in a name, is refused whole.
        #[test]
        fn awkward_names_make_one_line_or_a_nul_is_refused(
            measurement in "[a\t\0 ,=]{1,6}",
            tag_value in "[b\t\0 ,=]{1,6}",
        ) {
            let point = point(&measurement, &[("t", &tag_value)], &[("f", FieldValue::Integer(1))]);
            let mut buf = Vec::new();
            let encoded =
                encode_point(&mut buf, &point, Precision::Nanoseconds, &PointLimits::default());
            let unescapable = |name: &str| name.contains('\0');
            if unescapable(&measurement) || unescapable(&tag_value) {
                prop_assert!(
                    matches!(encoded, Err(EncodeError::Invalid(InvalidPoint::Unescapable { .. }))),
                    "{:?}",
                    encoded
                );
                prop_assert!(buf.is_empty(), "nothing written for a refused point");
            } else {
                prop_assert!(encoded.is_ok(), "{:?}", encoded);
                let text = std::str::from_utf8(&buf).expect("utf-8");
                prop_assert_eq!(split_lines(text.trim_end_matches('\n')).count(), 1);
                prop_assert_eq!(text.matches('\n').count(), 1);
            }
        }
    }
}
