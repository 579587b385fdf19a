//! RFC 3464 delivery status notifications (being written).
