//! Hooks' filters as the store sees them: which filters to run before a fan-out (`FilterRule`),
//! what a filter made of an event (`Judgement`, carried on the `NewEvent`), and the events held
//! because a filter failed on them (`HeldEvent`), to be judged again once it is fixed. The filters
//! themselves run above the store (`crate::filters`): the store only honours their judgements.

/// An enabled hook's filter and the events it selects: what the tracker runs before it stores a
/// batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub hook_id: String,
    pub filter: String,
    /// Trigger names and resource events (`Deal.create`) the hook selects.
    pub events: Vec<String>,
}

/// What the tracker reads of the hooks before each batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HooksForBatch {
    /// The resource events (`Deal.update`) some enabled hook selects: produced for the batch.
    pub resource_events: std::collections::BTreeSet<String>,
    /// The filters of enabled hooks: what the batch's events are judged by.
    pub filter_rules: Vec<FilterRule>,
}

/// What a hook's filter made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// `true`: the event is delivered.
    Passed,
    /// `false`: no delivery for that hook; counted in its `filtered_out`.
    Rejected,
    /// An error, or a value that is not a boolean: the delivery is stored failed with the error,
    /// neither sent nor dropped, until the filter judges it again (see `HeldEvent`).
    Failed(String),
}

/// An event held for a hook because its filter failed on it.
#[derive(Debug, Clone)]
pub struct HeldEvent {
    /// The delivery's sequence number: the cursor of `filter_held_events`.
    pub seq: i64,
    pub event_id: String,
    /// The trigger or resource event name.
    pub event_name: String,
    pub payload: String,
    pub resource_name: Option<String>,
    pub event_type: Option<String>,
    pub row_id: Option<i64>,
    /// The filter's error when it was last judged.
    pub error: String,
}
