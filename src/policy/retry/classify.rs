//! Deciding whether a failed attempt may be retried, from its outcome alone.
//!
//! The rules are documented on [`Classifier`].
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use super::budget::FailureClass;

/// lift's default retryable status codes.
pub const DEFAULT_ALLOW_CODES: [u16; 5] = [500, 502, 503, 504, 429];
/// lift's default non-retryable status codes.
pub const DEFAULT_DENY_CODES: [u16; 5] = [400, 401, 403, 404, 422];

/// What kind of error an attempt ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Any other failure (connection refused or reset, an unavailable peer, ...). Retryable by
    /// default.
    Other,
    /// The attempt ran out of its own (per-attempt) time. Retryable by default; quota budgets
    /// charge it their timeout cost.
    Timeout,
    /// The caller cancelled the request, or its overall deadline passed (lift's
    /// `context.Canceled` / `context.DeadlineExceeded`). Never retried by the default condition.
    Cancelled,
    /// The request itself is invalid (lift's `VALIDATION_ERROR`). Never retried by the default
    /// condition.
    Validation,
}

/// How an attempt ended, as far as retrying is concerned.
///
/// ```
/// use weir::policy::retry::{Classifier, ErrorKind, Outcome};
///
/// let c = Classifier::default();
/// assert!(c.classify(&Outcome::Status(503)).is_retryable());
/// assert!(!c.classify(&Outcome::Status(404)).is_retryable());
/// assert!(c.classify(&Outcome::error("io::ConnectionReset")).is_retryable());
/// assert!(!c.classify(&Outcome::Error { kind: ErrorKind::Cancelled, class: "cancel" }).is_retryable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<'a> {
    /// The attempt completed with this status code.
    Status(u16),
    /// The attempt failed with an error.
    Error {
        /// What kind of error.
        kind: ErrorKind,
        /// The error's class name, matched against the classifier's allow and deny lists.
        class: &'a str,
    },
}

impl<'a> Outcome<'a> {
    /// An error of kind [`ErrorKind::Other`] with this class name.
    pub fn error(class: &'a str) -> Outcome<'a> {
        Outcome::Error {
            kind: ErrorKind::Other,
            class,
        }
    }

    /// An error of kind [`ErrorKind::Timeout`] with this class name.
    pub fn timeout(class: &'a str) -> Outcome<'a> {
        Outcome::Error {
            kind: ErrorKind::Timeout,
            class,
        }
    }

    /// How a budget prices a retry after this outcome: [`FailureClass::Timeout`] for timeout
    /// errors, [`FailureClass::Normal`] otherwise (status codes included).
    pub fn failure_class(&self) -> FailureClass {
        match self {
            Outcome::Error {
                kind: ErrorKind::Timeout,
                ..
            } => FailureClass::Timeout,
            _ => FailureClass::Normal,
        }
    }
}

/// A retry condition: `false` makes an outcome not retryable (rule 1).
pub type Condition = Arc<dyn Fn(&Outcome<'_>) -> bool + Send + Sync>;

/// The verdict on an outcome, with the rule that decided it.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Classification {
    /// The outcome may be retried.
    Retryable(Retryable),
    /// The outcome must not be retried.
    NotRetryable(NotRetryable),
}

impl Classification {
    /// Whether the outcome may be retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, Classification::Retryable(_))
    }
}

/// Why an outcome is retryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retryable {
    /// The error's class is in the allow list (rule 3).
    AllowedClass,
    /// The status code is in the allow codes (rule 5).
    AllowedCode {
        /// The code.
        code: u16,
    },
    /// An error that no rule refused (rule 6).
    DefaultForErrors,
}

/// Why an outcome is not retryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotRetryable {
    /// The condition returned `false` (rule 1).
    Condition,
    /// The error's class is in the deny list (rule 2).
    DeniedClass,
    /// The allow list is not empty and the error's class is not in it (rule 3).
    NotInAllowList,
    /// The status code is in the deny codes (rule 4).
    DeniedCode {
        /// The code.
        code: u16,
    },
    /// A status code in neither list (rule 6).
    CodeNotAllowed {
        /// The code.
        code: u16,
    },
}

/// Classifies outcomes in lift's decision order.
///
/// An [`Outcome`] is either a status code (any protocol's: HTTP's, or a gRPC code mapped to
/// integers by the caller) or an error described by its [`ErrorKind`] and a class name (the
/// error's type name, as lift matches Go type names with `%T`). No HTTP crate is needed.
///
/// The [`Classifier`] follows lift's decision order; the first rule that applies decides:
///
/// 1. the condition (lift's `RetryCondition`; by default [`Classifier::default_condition`],
///    which refuses cancelled and validation errors): `false` means not retryable;
/// 2. errors whose class is in the deny list (lift's `NonRetryableErrors`): not retryable;
/// 3. if the allow list (lift's `RetryableErrors`) is not empty: errors whose class is in it are
///    retryable, all other errors are not;
/// 4. status codes in the deny codes (default 400, 401, 403, 404, 422): not retryable;
/// 5. status codes in the allow codes (default 500, 502, 503, 504, 429): retryable;
/// 6. the default: other status codes are not retryable, other errors are retryable.
///
/// Rules 2 and 3 look at errors only and rules 4 and 5 at status codes only (in lift a status
/// code arrives as an error of type `*lift.LiftError`, which the class lists could also name;
/// here the two kinds of outcome are kept apart).
///
/// ```
/// use weir::policy::retry::{Classification, Classifier, NotRetryable, Outcome, Retryable};
///
/// let c = Classifier::builder()
///     .deny_class("AuthError")
///     .allow_codes([503])
///     .build();
/// assert_eq!(
///     c.classify(&Outcome::Status(503)),
///     Classification::Retryable(Retryable::AllowedCode { code: 503 })
/// );
/// assert_eq!(
///     c.classify(&Outcome::Status(500)),
///     Classification::NotRetryable(NotRetryable::CodeNotAllowed { code: 500 })
/// );
/// assert_eq!(
///     c.classify(&Outcome::error("AuthError")),
///     Classification::NotRetryable(NotRetryable::DeniedClass)
/// );
/// ```
#[derive(Clone)]
pub struct Classifier {
    condition: Option<Condition>,
    deny_classes: Box<[Box<str>]>,
    allow_classes: Box<[Box<str>]>,
    /// Sorted, deduplicated.
    deny_codes: Box<[u16]>,
    /// Sorted, deduplicated.
    allow_codes: Box<[u16]>,
}

impl Default for Classifier {
    /// lift's defaults: the default condition, no class lists, deny codes
    /// [`DEFAULT_DENY_CODES`], allow codes [`DEFAULT_ALLOW_CODES`].
    fn default() -> Classifier {
        Classifier::builder().build()
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field(
                "condition",
                &if self.condition.is_some() {
                    "custom"
                } else {
                    "default"
                },
            )
            .field("deny_classes", &self.deny_classes)
            .field("allow_classes", &self.allow_classes)
            .field("deny_codes", &self.deny_codes)
            .field("allow_codes", &self.allow_codes)
            .finish()
    }
}

/// Builds a [`Classifier`]; starts from lift's defaults.
pub struct ClassifierBuilder {
    condition: Option<Condition>,
    deny_classes: Vec<Box<str>>,
    allow_classes: Vec<Box<str>>,
    deny_codes: Vec<u16>,
    allow_codes: Vec<u16>,
}

impl fmt::Debug for ClassifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifierBuilder").finish_non_exhaustive()
    }
}

impl ClassifierBuilder {
    /// Replaces the default condition (rule 1). Compose with
    /// [`Classifier::default_condition`] to keep its refusals.
    pub fn condition(mut self, f: impl Fn(&Outcome<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.condition = Some(Arc::new(f));
        self
    }
    /// Adds an error class that is never retried (rule 2).
    pub fn deny_class(mut self, class: &str) -> Self {
        self.deny_classes.push(class.into());
        self
    }
    /// Adds an error class to the allow list (rule 3); once the list is not empty, only the
    /// errors it names are retried.
    pub fn allow_class(mut self, class: &str) -> Self {
        self.allow_classes.push(class.into());
        self
    }
    /// Replaces the non-retryable status codes (rule 4; default [`DEFAULT_DENY_CODES`]).
    pub fn deny_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.deny_codes = codes.into_iter().collect();
        self
    }
    /// Replaces the retryable status codes (rule 5; default [`DEFAULT_ALLOW_CODES`]).
    pub fn allow_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.allow_codes = codes.into_iter().collect();
        self
    }
    /// The classifier. Every setting is valid, so this cannot fail.
    pub fn build(self) -> Classifier {
        fn sorted(mut v: Vec<u16>) -> Box<[u16]> {
            v.sort_unstable();
            v.dedup();
            v.into_boxed_slice()
        }
        Classifier {
            condition: self.condition,
            deny_classes: self.deny_classes.into_boxed_slice(),
            allow_classes: self.allow_classes.into_boxed_slice(),
            deny_codes: sorted(self.deny_codes),
            allow_codes: sorted(self.allow_codes),
        }
    }
}

impl Classifier {
    /// A builder starting from lift's defaults.
    pub fn builder() -> ClassifierBuilder {
        ClassifierBuilder {
            condition: None,
            deny_classes: Vec::new(),
            allow_classes: Vec::new(),
            deny_codes: DEFAULT_DENY_CODES.to_vec(),
            allow_codes: DEFAULT_ALLOW_CODES.to_vec(),
        }
    }

    /// lift's default condition: `false` for [`ErrorKind::Cancelled`] and
    /// [`ErrorKind::Validation`] errors, `true` otherwise.
    pub fn default_condition(outcome: &Outcome<'_>) -> bool {
        !matches!(
            outcome,
            Outcome::Error {
                kind: ErrorKind::Cancelled | ErrorKind::Validation,
                ..
            }
        )
    }

    /// Classifies one outcome by the rules in order (see [`Classifier`]).
    pub fn classify(&self, outcome: &Outcome<'_>) -> Classification {
        use Classification::{NotRetryable as No, Retryable as Yes};
        let pass = match &self.condition {
            Some(f) => f(outcome),
            None => Classifier::default_condition(outcome),
        };
        if !pass {
            return No(NotRetryable::Condition);
        }
        match *outcome {
            Outcome::Error { class, .. } => {
                if self.deny_classes.iter().any(|c| &**c == class) {
                    No(NotRetryable::DeniedClass)
                } else if self.allow_classes.is_empty() {
                    Yes(Retryable::DefaultForErrors)
                } else if self.allow_classes.iter().any(|c| &**c == class) {
                    Yes(Retryable::AllowedClass)
                } else {
                    No(NotRetryable::NotInAllowList)
                }
            }
            Outcome::Status(code) => {
                if self.deny_codes.binary_search(&code).is_ok() {
                    No(NotRetryable::DeniedCode { code })
                } else if self.allow_codes.binary_search(&code).is_ok() {
                    Yes(Retryable::AllowedCode { code })
                } else {
                    No(NotRetryable::CodeNotAllowed { code })
                }
            }
        }
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn lift_order() {
        let c = Classifier::default();
        for code in DEFAULT_ALLOW_CODES {
            assert!(c.classify(&Outcome::Status(code)).is_retryable());
        }
        for code in DEFAULT_DENY_CODES {
            assert_eq!(
                c.classify(&Outcome::Status(code)),
                Classification::NotRetryable(NotRetryable::DeniedCode { code })
            );
        }
        assert_eq!(
            c.classify(&Outcome::Status(200)),
            Classification::NotRetryable(NotRetryable::CodeNotAllowed { code: 200 })
        );
        assert_eq!(
            c.classify(&Outcome::timeout("t")),
            Classification::Retryable(Retryable::DefaultForErrors)
        );
        for kind in [ErrorKind::Cancelled, ErrorKind::Validation] {
            assert_eq!(
                c.classify(&Outcome::Error { kind, class: "x" }),
                Classification::NotRetryable(NotRetryable::Condition)
            );
        }
    }

    #[test]
    fn condition_comes_first_then_deny_then_allow() {
        let c = Classifier::builder()
            .condition(|o| !matches!(o, Outcome::Status(502)))
            .deny_class("A")
            .allow_class("A")
            .allow_class("B")
            .deny_codes([503])
            .allow_codes([503, 502, 503])
            .build();
        assert_eq!(
            c.classify(&Outcome::Status(502)),
            Classification::NotRetryable(NotRetryable::Condition)
        );
        assert_eq!(
            c.classify(&Outcome::Status(503)),
            Classification::NotRetryable(NotRetryable::DeniedCode { code: 503 })
        );
        assert_eq!(
            c.classify(&Outcome::error("A")),
            Classification::NotRetryable(NotRetryable::DeniedClass)
        );
        assert_eq!(
            c.classify(&Outcome::error("B")),
            Classification::Retryable(Retryable::AllowedClass)
        );
        assert_eq!(
            c.classify(&Outcome::error("C")),
            Classification::NotRetryable(NotRetryable::NotInAllowList)
        );
        // A custom condition replaces the default one: cancellations pass it here.
        assert!(
            c.classify(&Outcome::Error {
                kind: ErrorKind::Cancelled,
                class: "B"
            })
            .is_retryable()
        );
        assert!(format!("{c:?}").contains("custom"));
        assert_eq!(Outcome::timeout("t").failure_class(), FailureClass::Timeout);
        assert_eq!(Outcome::Status(500).failure_class(), FailureClass::Normal);
    }
}
