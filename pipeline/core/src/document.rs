//! The normalised event or log document, on its way to a search index.
//!
//! Decoders build it complete: the target index already resolved from the document's own
//! `@timestamp`, a deterministic `_id` (a hash of the message's content and routing, so a
//! redelivered message writes the same document again and `create` answers 409 instead of
//! storing a duplicate), and the serialised JSON source exactly as it goes into a bulk body.

use bytes::Bytes;

use crate::batch::ByteSize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The index it is written to, e.g. `logstash-2016.06.15`.
    pub index: String,
    /// The deterministic `_id`.
    pub id: String,
    /// The document's JSON, one line (no raw newline), ready for an NDJSON bulk body.
    pub source: Bytes,
}

impl ByteSize for Document {
    /// The document line plus its action line, close enough to bound a bulk body.
    fn byte_size(&self) -> usize {
        self.source.len() + self.index.len() + self.id.len() + 48
    }
}
