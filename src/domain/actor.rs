//! Who caused a state change, as every audit record and `batch.requested_by` store it.
//!
//! The forms: `cli:<user>`, optionally followed by `/<suffix>`, for a person at the command
//! line; `api:<name>` for an HTTP API client by its key's name; `customer:<account>` for a
//! customer on the redeem page; `job:<name>` for a job; `system`
//! for tender itself. `api:`, `job:` and `system` are reserved for in-process callers: the command line always builds `cli:` and the operating system's
//! user name, and a suffix cannot hold the `:` or `/` another form would need.

use std::fmt;

use crate::error::{Classify, Kind};

/// Longest user name accepted, in characters: the most `useradd` allows on Linux.
pub const ACTOR_USER_MAX_CHARS: usize = 32;

/// Longest suffix accepted, in characters. It is shown in terminals and stored in every audit
/// record, so it is short: room for a ticket number or a change id, not prose.
pub const ACTOR_SUFFIX_MAX_CHARS: usize = 32;

/// Longest job name, in characters: as long as a user name may be.
const JOB_NAME_MAX_CHARS: usize = ACTOR_USER_MAX_CHARS;

/// Who caused a state change: `cli:<user>` or `cli:<user>/<suffix>`, `job:<name>`, or `system`.
///
/// User names, suffixes and job names hold only `A-Z a-z 0-9 . _ -`: an actor is printed in
/// terminals and stored in every audit record, so it holds no control or formatting characters,
/// and no `:` or `/` that could make one form read as another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    full: String,
    /// Bytes of `full` that are the principal: all of it but a `/<suffix>`.
    principal_len: usize,
}

/// Why an actor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The operating system's user name is empty, too long, starts with `-` or holds a
    /// character outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "this process's user name cannot be an audit actor: it must have 1 to {ACTOR_USER_MAX_CHARS} characters from A-Z, a-z, 0-9, '.', '_' and '-', and not start with '-'"
    )]
    InvalidUser,
    /// The suffix is empty, too long or holds a character outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "an actor suffix is 1 to {ACTOR_SUFFIX_MAX_CHARS} characters from A-Z, a-z, 0-9, '.', '_' and '-', such as a ticket number; the user it follows is always the operating system's"
    )]
    InvalidSuffix,
}

impl Classify for ActorError {
    fn code(&self) -> &'static str {
        match self {
            ActorError::InvalidUser => "actor.invalid_user",
            ActorError::InvalidSuffix => "actor.invalid_suffix",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

impl Actor {
    /// A person at the command line: `cli:<user>`, or `cli:<user>/<suffix>` with a suffix.
    /// `user` is the operating system's name for the process's user, never a name the caller
    /// typed; the suffix is the caller's own note (a ticket number, say).
    pub fn cli(user: &str, suffix: Option<&str>) -> Result<Actor, ActorError> {
        if !is_name(user, ACTOR_USER_MAX_CHARS) || user.starts_with('-') {
            return Err(ActorError::InvalidUser);
        }
        let principal = format!("cli:{user}");
        let principal_len = principal.len();
        let full = match suffix {
            None => principal,
            Some(suffix) if is_name(suffix, ACTOR_SUFFIX_MAX_CHARS) => {
                format!("{principal}/{suffix}")
            }
            Some(_) => return Err(ActorError::InvalidSuffix),
        };
        Ok(Actor {
            full,
            principal_len,
        })
    }

    /// A job: `job:<name>`. For in-process callers only; the name is part of the program.
    ///
    /// # Panics
    ///
    /// When `name` is not 1 to 32 characters from `A-Z a-z 0-9 . _ -`: a bug, not bad input.
    pub fn job(name: &'static str) -> Actor {
        assert!(
            is_name(name, JOB_NAME_MAX_CHARS),
            "job name {name:?} is not a valid actor name"
        );
        Actor::whole(format!("job:{name}"))
    }

    /// The demo's scripted second person: `demo:<name>`, so the demo can show a four-eyes
    /// approval without a second login. For in-process callers only.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid actor name: a bug, not bad input.
    pub fn demo(name: &'static str) -> Actor {
        assert!(
            is_name(name, JOB_NAME_MAX_CHARS),
            "demo actor {name:?} is not a valid actor name"
        );
        Actor::whole(format!("demo:{name}"))
    }

    /// An HTTP API client, by its key's name: `api:<name>`. The name's rules are an actor's, so
    /// every key name makes a valid actor.
    pub fn api(name: &super::ApiKeyName) -> Actor {
        Actor::whole(format!("api:{name}"))
    }

    /// A customer on the redeem page, signed in to their account: `customer:<account id>`.
    /// Their network address counts in the redemption limits but is not recorded here, so the
    /// permanent trail holds no personal data beyond the account it already names.
    pub fn customer(account: super::AccountId) -> Actor {
        Actor::whole(format!("customer:{account}"))
    }

    /// tender itself, acting for no person and no job. For in-process callers only.
    pub fn system() -> Actor {
        Actor::whole("system".to_string())
    }

    /// An actor with no suffix: all of it is the principal.
    fn whole(full: String) -> Actor {
        Actor {
            principal_len: full.len(),
            full,
        }
    }

    /// Who is authenticated: the actor without its suffix (`cli:alice` for
    /// `cli:alice/ticket-7`). Every four-eyes rule compares principals, never the suffix, which
    /// the caller chooses freely.
    pub fn principal(&self) -> &str {
        &self.full[..self.principal_len]
    }

    /// The full form, suffix included, as the audit trail records it.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// 1 to `max` characters, each `A-Z a-z 0-9 . _ -` (ASCII, so bytes count characters).
fn is_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_actor_is_the_user_and_an_optional_suffix() {
        let alice = Actor::cli("alice", None).unwrap();
        assert_eq!(alice.as_str(), "cli:alice");
        assert_eq!(alice.to_string(), "cli:alice");
        let ticket = Actor::cli("alice", Some("ticket-7")).unwrap();
        assert_eq!(ticket.as_str(), "cli:alice/ticket-7");
        assert_eq!(ticket.to_string(), "cli:alice/ticket-7");
        assert_eq!(
            Actor::cli("svc.tender_2", Some("CHG-2026.04_1"))
                .unwrap()
                .as_str(),
            "cli:svc.tender_2/CHG-2026.04_1"
        );
    }

    #[test]
    fn the_principal_leaves_out_the_suffix() {
        let plain = Actor::cli("alice", None).unwrap();
        let ticket = Actor::cli("alice", Some("ticket-7")).unwrap();
        assert_eq!(plain.principal(), "cli:alice");
        assert_eq!(ticket.principal(), "cli:alice");
        // Two suffixes of one person are still one person for a four-eyes rule.
        let other = Actor::cli("alice", Some("ticket-8")).unwrap();
        assert_eq!(ticket.principal(), other.principal());
        assert_ne!(ticket, other);
        assert_ne!(
            Actor::cli("bob", Some("ticket-7")).unwrap().principal(),
            ticket.principal()
        );
        assert_eq!(
            Actor::job("generate-batch").principal(),
            "job:generate-batch"
        );
        assert_eq!(Actor::system().principal(), "system");
    }

    #[test]
    fn reserved_forms_come_only_from_their_constructors() {
        assert_eq!(Actor::job("generate-batch").as_str(), "job:generate-batch");
        assert_eq!(Actor::system().as_str(), "system");
        // A user name or a suffix cannot spell another form.
        for fake in ["job:generate-batch", "system/x", "cli:cfo", "a/b"] {
            assert_eq!(
                Actor::cli("alice", Some(fake)),
                Err(ActorError::InvalidSuffix),
                "{fake}"
            );
            assert_eq!(
                Actor::cli(fake, None),
                Err(ActorError::InvalidUser),
                "{fake}"
            );
        }
        assert_ne!(Actor::cli("system", None).unwrap(), Actor::system());
    }

    #[test]
    fn a_suffix_is_one_to_32_safe_characters() {
        let longest = "x".repeat(ACTOR_SUFFIX_MAX_CHARS);
        assert!(Actor::cli("alice", Some(&longest)).is_ok());
        for suffix in [
            "",
            &"x".repeat(ACTOR_SUFFIX_MAX_CHARS + 1),
            "x\u{1b}]0;owned\u{7}",
            "ticket 7",
            "ticket\n7",
            "t\u{202e}7",
            "t\u{200b}7",
            "caf\u{e9}",
            "ticket:7",
        ] {
            assert_eq!(
                Actor::cli("alice", Some(suffix)),
                Err(ActorError::InvalidSuffix),
                "{suffix:?}"
            );
        }
    }

    #[test]
    fn a_user_is_one_to_32_safe_characters_not_starting_with_a_dash() {
        assert!(Actor::cli(&"u".repeat(ACTOR_USER_MAX_CHARS), None).is_ok());
        assert!(Actor::cli("a-b", None).is_ok());
        for user in [
            "",
            &"u".repeat(ACTOR_USER_MAX_CHARS + 1),
            "-alice",
            "al ice",
            "\u{1b}",
        ] {
            assert_eq!(
                Actor::cli(user, Some("ok")),
                Err(ActorError::InvalidUser),
                "{user:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "not a valid actor name")]
    fn a_job_name_outside_the_charset_is_a_bug() {
        Actor::job("generate batch");
    }

    #[test]
    fn every_error_has_a_stable_code() {
        assert_eq!(ActorError::InvalidUser.code(), "actor.invalid_user");
        assert_eq!(ActorError::InvalidSuffix.code(), "actor.invalid_suffix");
        assert_eq!(ActorError::InvalidSuffix.kind(), Kind::Invalid);
        assert!(ActorError::InvalidSuffix.to_string().contains("1 to 32"));
    }
}
