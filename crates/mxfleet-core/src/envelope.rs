//! The SMTP envelope of a queued message: what MAIL FROM and RCPT TO said, and the
//! Message-ID that dedup keys on.

use serde::{Deserialize, Serialize};

/// The envelope as accepted at intake. The body lives in the blob store; this travels
/// through the Raft log and stays small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path, without angle brackets. Empty for the null sender (`<>`).
    pub sender: String,
    /// Forward paths, without angle brackets, in the order RCPT TO gave them.
    pub recipients: Vec<String>,
    /// The message's `Message-ID:` header, if it had one, with its angle brackets.
    pub message_id: Option<String>,
}
