//! Commands that need no cluster: they work from a body, headers and a secret.
//!
//! `sign` and `send` sign with the sidecar's sender-side code (`hookguard_sidecar::sign`),
//! `verify` checks with the sidecar's own [`Verifier`](hookguard_sidecar::verify::Verifier)
//! and, when that refuses, [`diagnose`] tries the known mistakes through the same verifier:
//! what these commands say is what the sidecar does.

pub mod diagnose;
mod input;
mod json_forms;
pub mod send;
pub mod sign;
pub mod verify;

#[cfg(test)]
mod tests {
    use clap::Args as _;

    #[test]
    fn every_flag_of_the_offline_commands_has_help() {
        for command in [
            super::sign::Args::augment_args(clap::Command::new("sign")),
            super::send::Args::augment_args(clap::Command::new("send")),
            super::verify::Args::augment_args(clap::Command::new("verify")),
        ] {
            let command = command.no_binary_name(true);
            assert!(command.get_after_help().is_some(), "{}", command.get_name());
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some_and(|h| h.to_string().len() > 10),
                    "{} {}",
                    command.get_name(),
                    arg.get_id()
                );
            }
            command.debug_assert();
        }
    }
}
