//! Outbound SMTP client (being written).
