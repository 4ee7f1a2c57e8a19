//! Items through a sink the way a path drives it, for the sinks' own tests.

use std::borrow::Borrow;

use sluice_core::outcome::ItemOutcome;
use sluice_core::path::Encode;
use sluice_core::rejection::Refusal;

/// Encodes each item with the sink's own encoder, in turn (an item already refused before the
/// sink, or refused by its encoding, gets that refusal as its outcome), then writes the encoded
/// ones in one batch. Answers one outcome per item, in order.
pub async fn encode_and_write<S, Item, Given>(
    sink: &S,
    items: impl IntoIterator<Item = Result<Given, Refusal>>,
) -> Vec<ItemOutcome>
where
    S: Encode<Item>,
    Item: ?Sized,
    Given: Borrow<Item>,
{
    let mut encoder = sink.encoder();
    let mut outcomes = Vec::new();
    let mut encoded = Vec::new();
    for item in items {
        match item.and_then(|item| sink.encode(&mut encoder, item.borrow())) {
            Ok(item) => {
                outcomes.push(None);
                encoded.push(item);
            }
            Err(refusal) => outcomes.push(Some(ItemOutcome::from(refusal))),
        }
    }
    let mut written = sink
        .write(&encoded.iter().collect::<Vec<_>>())
        .await
        .into_iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome
                .or_else(|| written.next())
                .expect("the sink answers one outcome per written item")
        })
        .collect()
}
