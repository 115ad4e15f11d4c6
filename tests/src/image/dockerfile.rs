//! Reads the runtime stages of the repository's Dockerfile, so a test can hold the images
//! built here to the same layout (binary path, user, entrypoint, cmd, ports, labels).
//! Only the instructions those stages use are understood; anything else is ignored.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

/// What one `FROM … AS <name>` stage sets.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stage {
    pub from: String,
    /// Destinations of `COPY`, in order.
    pub copies: Vec<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `EXPOSE`, normalised to `<port>/<proto>`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The stages of `dockerfile` by name (unnamed stages are skipped).
pub(crate) fn stages(dockerfile: &str) -> anyhow::Result<BTreeMap<String, Stage>> {
    let mut stages = BTreeMap::new();
    let mut current: Option<(String, Stage)> = None;
    for instruction in instructions(dockerfile) {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .map_or((instruction.as_str(), ""), |(k, r)| (k, r.trim()));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            if let Some((name, stage)) = current.take() {
                stages.insert(name, stage);
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [from, as_, name] = words.as_slice()
                && as_.eq_ignore_ascii_case("as")
            {
                let stage = Stage {
                    from: (*from).to_owned(),
                    ..Stage::default()
                };
                current = Some(((*name).to_owned(), stage));
            }
            continue;
        }
        let Some((_, stage)) = current.as_mut() else {
            continue;
        };
        match keyword.as_str() {
            "COPY" => {
                let dest = rest
                    .split_whitespace()
                    .last()
                    .with_context(|| format!("COPY without a destination: {instruction}"))?;
                stage.copies.push(dest.to_owned());
            }
            "USER" => stage.user = Some(rest.to_owned()),
            "ENTRYPOINT" => {
                stage.entrypoint = exec_form(rest)?;
                // Docker: a stage's ENTRYPOINT drops the CMD it inherited.
                stage.cmd.clear();
            }
            "CMD" => stage.cmd = exec_form(rest)?,
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_owned()
                    } else {
                        format!("{port}/tcp")
                    };
                    stage.exposed_ports.push(port);
                }
            }
            "LABEL" => stage.labels.extend(labels(rest)?),
            _ => {}
        }
    }
    if let Some((name, stage)) = current {
        stages.insert(name, stage);
    }
    Ok(stages)
}

/// Joins `\`-continued lines and drops comments and blank lines.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
        } else {
            pending.push_str(trimmed);
            out.push(std::mem::take(&mut pending).trim().to_owned());
        }
    }
    if !pending.trim().is_empty() {
        out.push(pending.trim().to_owned());
    }
    out
}

/// `["a", "b"]`; the shell form is refused, as these images have no shell.
fn exec_form(rest: &str) -> anyhow::Result<Vec<String>> {
    if !rest.starts_with('[') {
        bail!("not the exec (JSON) form: {rest}");
    }
    serde_json::from_str(rest).with_context(|| format!("parsing {rest}"))
}

/// `k="v" k2=v2 …` (double-quoted values may hold spaces; `\"` escapes a quote).
fn labels(rest: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => bail!("unterminated quote in LABEL {rest}"),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("malformed LABEL {rest}");
        }
        out.push((key, value));
    }
}
