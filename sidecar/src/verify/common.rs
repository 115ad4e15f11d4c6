//! Parsing shared by the schemes: single-valued headers, unix timestamps, and presented
//! signatures decoded into a small fixed-size list compared in constant time.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderName, HeaderValue};
use subtle::{Choice, ConstantTimeEq as _};

use super::Rejection;

/// Length of an HMAC-SHA256 output.
pub(super) const MAC_LEN: usize = 32;

/// More presented signatures than this is not a rotation, it is an attempt to multiply our
/// work; senders send one or two.
const MAX_CANDIDATES: usize = 8;

/// Standard alphabet; padding optional, because senders and people copying secrets disagree
/// on it. Trailing bits are allowed so a truncated signature still decodes (to the wrong
/// length) and is refused as a mismatch, as the official libraries do, not as malformed.
pub(super) const BASE64_LENIENT_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The value of a header that must appear at most once. A repeated signature, timestamp or ID
/// header is refused: the sidecar and the app could otherwise read different copies.
pub(super) fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(malformed(name, "sent more than once"));
    }
    Ok(first)
}

/// Like [`single`], but the header is required.
pub(super) fn required<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<&'h [u8], Rejection> {
    single(headers, name)?
        .map(HeaderValue::as_bytes)
        .ok_or_else(|| Rejection::MissingHeader(name.clone()))
}

/// The first of two header names that is present (`primary` wins), with the name used, or a
/// missing-header rejection naming `primary`.
pub(super) fn required_either<'h>(
    headers: &'h HeaderMap,
    primary: &'static HeaderName,
    alias: &'static HeaderName,
) -> Result<(&'static HeaderName, &'h [u8]), Rejection> {
    if let Some(value) = single(headers, primary)? {
        return Ok((primary, value.as_bytes()));
    }
    if let Some(value) = single(headers, alias)? {
        return Ok((alias, value.as_bytes()));
    }
    Err(Rejection::MissingHeader(primary.clone()))
}

pub(super) fn malformed(name: &HeaderName, problem: &'static str) -> Rejection {
    Rejection::MalformedHeader {
        header: name.clone(),
        problem,
    }
}

/// Parses unix seconds: ASCII digits only (no sign, no spaces, no fraction), no overflow.
pub(super) fn parse_unix_seconds(value: &[u8]) -> Option<i64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0_i64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A presented signature that was well-formed but not as long as a MAC can never match.
type Presented = Option<[u8; MAC_LEN]>;

/// Decodes lower-case hex. `Err` for anything that is not lower-case hex of even length
/// (upper case included: the senders' libraries compare the exact lower-case string).
pub(super) fn decode_lower_hex(value: &[u8]) -> Result<Presented, ()> {
    fn nibble(b: u8) -> Result<u8, ()> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            _ => Err(()),
        }
    }
    if value.is_empty() || !value.len().is_multiple_of(2) {
        return Err(());
    }
    let mut out = [0_u8; MAC_LEN];
    let right_length = value.len() == 2 * MAC_LEN;
    for (i, pair) in value.chunks_exact(2).enumerate() {
        let byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        if let Some(slot) = out.get_mut(i) {
            *slot = byte;
        }
    }
    Ok(right_length.then_some(out))
}

/// Decodes standard base64. `Err` for an empty value or characters outside the alphabet.
pub(super) fn decode_base64(value: &[u8]) -> Result<Presented, ()> {
    if value.is_empty() {
        return Err(());
    }
    // Room for a little more than a MAC, so a longer value is told from a shorter one.
    let mut buf = [0_u8; MAC_LEN + 16];
    match BASE64_LENIENT_PADDING.decode_slice(value, &mut buf) {
        Ok(MAC_LEN) => {
            let mut out = [0_u8; MAC_LEN];
            out.copy_from_slice(&buf[..MAC_LEN]);
            Ok(Some(out))
        }
        Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => Ok(None),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(()),
    }
}

/// The presented signatures of one request, decoded, without heap allocation.
#[derive(Default)]
pub(super) struct Candidates {
    sigs: [[u8; MAC_LEN]; MAX_CANDIDATES],
    len: usize,
    /// Well-formed entries seen, including those of the wrong length.
    seen: usize,
}

impl Candidates {
    /// The one signature of a scheme that sends exactly one.
    pub(super) fn one(presented: Presented) -> Self {
        let mut candidates = Self::default();
        // Cannot fail: the list is empty and holds more than one.
        let _ = candidates.push(presented);
        candidates
    }

    /// Adds one decoded signature; `Err` when the request presents too many.
    pub(super) fn push(&mut self, presented: Presented) -> Result<(), ()> {
        self.seen += 1;
        if self.seen > MAX_CANDIDATES {
            return Err(());
        }
        if let (Some(sig), Some(slot)) = (presented, self.sigs.get_mut(self.len)) {
            *slot = sig;
            self.len += 1;
        }
        Ok(())
    }

    /// No well-formed entry at all (not even one of the wrong length).
    pub(super) fn none_seen(&self) -> bool {
        self.seen == 0
    }

    /// No entry that could match a MAC.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `mac` equals any candidate. Every candidate is compared, in constant time.
    pub(super) fn contains(&self, mac: &[u8]) -> bool {
        let mut found = Choice::from(0);
        for sig in self.sigs.iter().take(self.len) {
            found |= sig.as_slice().ct_eq(mac);
        }
        found.into()
    }
}

/// Like [`decode_base64`], but only the canonical encoding (padded, no stray bits) can match:
/// Standard Webhooks' libraries compare the padded base64 string, so `…` without its `=` is
/// no match there, and it is none here (a mismatch, not a malformed header).
pub(super) fn decode_base64_canonical(value: &[u8]) -> Result<Presented, ()> {
    let presented = decode_base64(value)?;
    Ok(presented.filter(|bytes| is_canonical_base64(bytes, value)))
}

/// Whether `value` is exactly the padded standard base64 of `bytes` (at most 64 of them: a
/// MAC or an ed25519 signature).
pub(super) fn is_canonical_base64(bytes: &[u8], value: &[u8]) -> bool {
    let mut canonical = [0_u8; 88];
    base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut canonical)
        .is_ok_and(|n| canonical.get(..n) == Some(value))
}

/// Decodes standard base64 (padding optional) into `buf`; `Ok(None)` when it decodes to more
/// than `buf` holds (it cannot match), `Err` for an empty value or characters outside the
/// alphabet.
pub(super) fn decode_base64_into<'b>(
    value: &[u8],
    buf: &'b mut [u8],
) -> Result<Option<&'b [u8]>, ()> {
    if value.is_empty() {
        return Err(());
    }
    match BASE64_LENIENT_PADDING.decode_slice(value, buf) {
        Ok(n) => Ok(buf.get(..n)),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => Ok(None),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(()),
    }
}

/// Whether the request declares a form body (`application/x-www-form-urlencoded`).
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..33)
                .is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        })
}

/// The first value of form field `name` in a form body, decoded (`+` is a space).
pub(super) fn form_field<'a>(body: &'a [u8], name: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// The timestamp (raw and parsed) and the signature of a scheme that sends
/// `<signature>: v0=<lower-case hex>` over `v0:{timestamp}:{body}` with the unix-seconds
/// timestamp in its own header (Slack, Zoom).
pub(super) fn v0_signature<'h>(
    headers: &'h HeaderMap,
    timestamp: &HeaderName,
    signature: &HeaderName,
) -> Result<(&'h [u8], i64, Candidates), Rejection> {
    let ts_raw = required(headers, timestamp)?;
    let value = required(headers, signature)?;
    let ts =
        parse_unix_seconds(ts_raw).ok_or_else(|| malformed(timestamp, "expected unix seconds"))?;
    // v0 is the only version either sender defines; anything else cannot be checked.
    let hex = value
        .strip_prefix(b"v0=")
        .ok_or_else(|| malformed(signature, "expected `v0=` prefix"))?;
    let presented =
        decode_lower_hex(hex).map_err(|()| malformed(signature, "expected lower-case hex"))?;
    Ok((ts_raw, ts, Candidates::one(presented)))
}

/// Lower-case hex of SHA-256 over `body`.
pub(super) fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(body))
}

/// A signature header of `key=value` elements, Stripe's `t=…,v1=…` and Paddle's `ts=…;h1=…`.
/// Built with [`elements!`], which writes each problem with the scheme's own key names.
pub(super) struct Elements {
    /// Between elements: `,` (Stripe) or `;` (Paddle).
    pub(super) separator: u8,
    /// The key of the one timestamp element.
    pub(super) timestamp: &'static [u8],
    /// The key of the signature elements (lower-case hex; several while a secret rotates).
    pub(super) signature: &'static [u8],
    /// An element that is not `key=value`: skipped (Stripe's libraries) or refused.
    pub(super) skip_malformed: bool,
    /// What is said of each problem, naming the keys.
    pub(super) problems: ElementProblems,
}

/// The problems of an [`Elements`] header, as the malformed-header rejection says them.
pub(super) struct ElementProblems {
    pub(super) repeated_timestamp: &'static str,
    pub(super) no_timestamp: &'static str,
    pub(super) bad_timestamp: &'static str,
    pub(super) bad_signature: &'static str,
    pub(super) no_signature: &'static str,
}

/// An [`Elements`] for `separator`, the timestamp key and the signature key.
macro_rules! elements {
    ($separator:expr, $timestamp:literal, $signature:literal, skip_malformed: $skip:expr) => {
        $crate::verify::common::Elements {
            separator: $separator,
            timestamp: $timestamp.as_bytes(),
            signature: $signature.as_bytes(),
            skip_malformed: $skip,
            problems: $crate::verify::common::ElementProblems {
                repeated_timestamp: concat!("more than one `", $timestamp, "` element"),
                no_timestamp: concat!("no `", $timestamp, "` element"),
                bad_timestamp: concat!("`", $timestamp, "` is not unix seconds"),
                bad_signature: concat!("`", $signature, "` is not lower-case hex"),
                no_signature: concat!("no `", $signature, "` signature"),
            },
        }
    };
}
pub(super) use elements;

impl Elements {
    /// The raw and parsed timestamp and the decoded signatures of `value`, the header
    /// `name`'s value. Other keys are ignored: a sender may add versions.
    pub(super) fn parse<'v>(
        &self,
        name: &HeaderName,
        value: &'v [u8],
    ) -> Result<(&'v [u8], i64, Candidates), Rejection> {
        let malformed = |problem| malformed(name, problem);
        let problems = &self.problems;
        let mut ts_raw: Option<&[u8]> = None;
        let mut candidates = Candidates::default();
        for element in value.split(|&b| b == self.separator) {
            let Some(at) = element.iter().position(|&b| b == b'=') else {
                if self.skip_malformed {
                    continue;
                }
                return Err(malformed("an element is not `key=value`"));
            };
            let (key, val) = (&element[..at], &element[at + 1..]);
            if key == self.timestamp {
                if ts_raw.replace(val).is_some() {
                    return Err(malformed(problems.repeated_timestamp));
                }
            } else if key == self.signature {
                let presented =
                    decode_lower_hex(val).map_err(|()| malformed(problems.bad_signature))?;
                candidates
                    .push(presented)
                    .map_err(|()| malformed("too many signatures"))?;
            }
        }
        let ts_raw = ts_raw.ok_or_else(|| malformed(problems.no_timestamp))?;
        let ts = parse_unix_seconds(ts_raw).ok_or_else(|| malformed(problems.bad_timestamp))?;
        if candidates.none_seen() {
            return Err(malformed(problems.no_signature));
        }
        Ok((ts_raw, ts, candidates))
    }
}
