//! Why a `kiln` command failed: one line for a person (or one JSON object
//! with `--json`) and a documented exit code (see [`crate::cli::EXIT_CODES`]).

use kiln_shared::client::ClientError;
use kiln_shared::exit;
use reqwest::StatusCode;
use std::path::PathBuf;

/// sysexits(3) codes for failures of the command itself, kept apart from
/// the 0–3 of a finished work request so that scripts can tell them apart.
pub mod code {
    pub const DATAERR: u8 = 65;
    pub const NOINPUT: u8 = 66;
    pub const UNAVAILABLE: u8 = 69;
    pub const CANTCREAT: u8 = 73;
    pub const TEMPFAIL: u8 = 75;
    pub const PROTOCOL: u8 = 76;
    pub const NOPERM: u8 = 77;
    pub const CONFIG: u8 = 78;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line input found before anything was sent.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("failed to read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("failed to write {}: {source}", path.display())]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("{message}")]
    Client { message: String, code: u8, kind: &'static str },
    /// A download that does not match what the artifact declares.
    #[error("{0}")]
    Corrupt(String),
    #[error("gave up after {0} s: work request {1} has not finished")]
    Timeout(u64, i64),
    /// An input file that is not what it claims (a .dsc whose files do not match).
    #[error("{0}")]
    BadInput(String),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Config(_) => code::CONFIG,
            CliError::ReadFile { .. } => code::NOINPUT,
            CliError::WriteFile { .. } => code::CANTCREAT,
            CliError::Client { code, .. } => *code,
            CliError::Corrupt(_) => code::PROTOCOL,
            CliError::Timeout(..) => code::TEMPFAIL,
            CliError::BadInput(_) => code::DATAERR,
        }
    }

    /// A short machine-readable name, for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::Config(_) => "config",
            CliError::ReadFile { .. } => "read-file",
            CliError::WriteFile { .. } => "write-file",
            CliError::Client { kind, .. } => kind,
            CliError::Corrupt(_) => "corrupt-download",
            CliError::Timeout(..) => "timeout",
            CliError::BadInput(_) => "bad-input",
        }
    }

    /// Turn a client error into one clear line. `has_token` says whether a
    /// token was configured at all, to say what to do about a 401.
    pub fn from_client(err: ClientError, has_token: bool) -> Self {
        match err {
            ClientError::Api { status, body } => {
                let (code, kind, message) = describe_status(status, &body.error, &body.message, has_token);
                CliError::Client { message, code, kind }
            }
            ClientError::Transport { url, source } => CliError::Client {
                message: {
                    let cause = root_cause(&source);
                    format!("cannot reach the coordinator at {url}: {cause}{}", tls_hint(&cause))
                },
                code: code::UNAVAILABLE,
                kind: "unreachable",
            },
            ClientError::Decode { url, source } => CliError::Client {
                message: format!("the reply from {url} was not understood: {}", root_cause(&source)),
                code: code::PROTOCOL,
                kind: "bad-reply",
            },
            ClientError::BadUrl(url) => {
                CliError::Config(format!("invalid server URL {url:?}: it must start with http:// or https://"))
            }
            e @ ClientError::CaCertificate { .. } => CliError::Config(e.to_string()),
        }
    }
}

fn describe_status(status: StatusCode, error: &str, message: &str, has_token: bool) -> (u8, &'static str, String) {
    match status.as_u16() {
        401 if !has_token => (
            code::NOPERM,
            "unauthorized",
            "no token given: pass --token, set KILN_TOKEN, or put token = \"...\" in the config file".to_owned(),
        ),
        401 => (code::NOPERM, "unauthorized", format!("the coordinator refused the token: {message}")),
        403 => (code::NOPERM, "forbidden", format!("not allowed: {message}")),
        400 | 413 | 422 => {
            (exit::USAGE, "bad-input", format!("the coordinator refused the input: {message} ({error})"))
        }
        404 => (code::DATAERR, "not-found", message.to_owned()),
        409 => (code::DATAERR, "conflict", format!("{message} ({error})")),
        s if s >= 500 => (code::UNAVAILABLE, "server-error", format!("the coordinator failed: {message} ({status})")),
        _ => (code::DATAERR, "refused", format!("{message} ({status}, {error})")),
    }
}

/// What to do when the coordinator's certificate is not trusted, given
/// the transport error's innermost cause.
fn tls_hint(cause: &str) -> &'static str {
    if cause.contains("certificate") {
        " (if the coordinator uses its own CA, trust it with --ca-certificate FILE, KILN_CA_CERTIFICATE or \
         ca_certificate in the config file)"
    } else {
        ""
    }
}

/// The innermost cause of an error chain: for transport errors this is the
/// part a person can act on ("Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_shared::ErrorBody;

    fn api(status: u16, error: &str) -> ClientError {
        ClientError::Api {
            status: StatusCode::from_u16(status).expect("status"),
            body: ErrorBody { error: error.into(), message: "why".into() },
        }
    }

    #[test]
    fn statuses_map_to_documented_codes() {
        let cases = [(400, 64), (401, 77), (403, 77), (404, 65), (409, 65), (413, 64), (500, 69), (418, 65)];
        for (status, want) in cases {
            assert_eq!(CliError::from_client(api(status, "x"), true).exit_code(), want, "{status}");
        }
    }

    #[test]
    fn a_missing_token_says_how_to_give_one() {
        let e = CliError::from_client(api(401, "unauthorized"), false);
        assert!(e.to_string().contains("KILN_TOKEN"), "{e}");
        let e = CliError::from_client(api(401, "unauthorized"), true);
        assert!(e.to_string().contains("refused the token"), "{e}");
    }
}
