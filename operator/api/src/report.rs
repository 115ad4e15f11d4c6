//! How Hookguard's binaries print an error: the error and its sources on one line,
//! `outer: inner: cause`, so a log line or an exit message says the whole why.

/// `error` and each of its sources, joined by `": "`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("reading the config")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_source_is_on_the_line() {
        let error = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(super::chain(&error), "reading the config: disk on fire");
    }
}
