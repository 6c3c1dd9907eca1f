//! The JSON the API speaks, one type per body, with their OpenAPI schemas.
//! Request bodies refuse unknown fields; numbers are checked against the
//! engine's limits when they are turned into engine requests (`convert`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/skus/{sku}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockBody {
    /// Units on hand, 0..=2^40.
    pub on_hand: u64,
    /// Apply only if the SKU's version is this (0: the SKU must not exist yet).
    #[serde(default)]
    pub expected_version: Option<u64>,
}

/// `POST /v1/skus/{sku}/adjust`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Signed change to on_hand.
    pub delta: i64,
}

/// One cart line as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub sku: String,
    /// 1..=1000000.
    pub qty: i64,
}

/// `POST /v1/reservations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// The idempotency key: 1..=128 printable ASCII bytes.
    pub id: String,
    /// 1..=100 lines, no SKU twice.
    #[serde(deserialize_with = "crate::http::json::object_lines")]
    pub lines: Vec<LineBody>,
    /// Hold length, 1000..=86400000 ms (default 900000).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// `POST /v1/reservations/{id}/commit`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// The order to hand to the order sink (accepted, not stored yet).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub order: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/reservations/{id}/release`: no fields; the body may be empty
/// or `{}`, and anything else is refused like any bad body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {}

/// A SKU's counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SkuBody {
    pub sku: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub version: u64,
}

/// A reservation (the answer to a hold, and to `GET /v1/reservations/{id}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ReservationBody {
    pub id: String,
    /// held, committed, released or expired.
    pub state: &'static str,
    pub expires_at_ms: u64,
    /// In SKU order.
    pub lines: Vec<LineBody>,
}

impl PartialEq for LineBody {
    fn eq(&self, other: &LineBody) -> bool {
        self.sku == other.sku && self.qty == other.qty
    }
}

impl Eq for LineBody {}

/// The answer to a commit or a release.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct DecisionBody {
    pub state: &'static str,
}

/// Every error: a stable code, a message, and what the client needs to act.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: code.to_owned(),
            message: message.into(),
            sku: None,
            requested: None,
            available: None,
            reserved: None,
            expected_version: None,
            current_version: None,
        }
    }
}

/// `POST /v1/batch`: each op is an endpoint's body plus `"op"`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Up to 1000 ops, e.g. `{"op":"reserve","id":"o-1","lines":[...]}`,
    /// `{"op":"commit","id":"o-1"}`, `{"op":"release","id":...}`,
    /// `{"op":"set_stock","sku":...,"on_hand":...}`, `{"op":"adjust","sku":...,"delta":...}`,
    /// `{"op":"get_sku","sku":...}`, `{"op":"get_reservation","id":...}`.
    #[schema(value_type = Vec<Object>)]
    pub ops: Vec<serde_json::Value>,
}

/// The `op` of a batch op alone: read when an op does not parse, so that a
/// caller who may not run the op at all learns 403 (as an endpoint checks
/// the role before the body).
#[derive(Debug, Deserialize)]
pub struct BatchOpTag {
    pub op: BatchOpKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchOpKind {
    Reserve,
    Commit,
    Release,
    SetStock,
    Adjust,
    GetSku,
    GetReservation,
}

impl BatchOpKind {
    pub fn name(self) -> &'static str {
        match self {
            BatchOpKind::Reserve => "reserve",
            BatchOpKind::Commit => "commit",
            BatchOpKind::Release => "release",
            BatchOpKind::SetStock => "set_stock",
            BatchOpKind::Adjust => "adjust",
            BatchOpKind::GetSku => "get_sku",
            BatchOpKind::GetReservation => "get_reservation",
        }
    }

    /// The fields an op of this kind may carry besides `op`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            BatchOpKind::Reserve => &["id", "lines", "ttl_ms"],
            BatchOpKind::Commit => &["id", "order"],
            BatchOpKind::Release | BatchOpKind::GetReservation => &["id"],
            BatchOpKind::SetStock => &["sku", "on_hand", "expected_version"],
            BatchOpKind::Adjust => &["sku", "delta"],
            BatchOpKind::GetSku => &["sku"],
        }
    }
}

/// One op of a batch as parsed: `op` and every field any op takes, in one
/// pass (an internally tagged enum would buffer each op first). The
/// endpoint's body plus `"op"`; `batch::plan` refuses fields that are not
/// the op's own and requires the ones it needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOp {
    pub op: BatchOpKind,
    #[serde(default)]
    pub id: Sent<String>,
    #[serde(default, deserialize_with = "crate::http::json::sent_object_lines")]
    pub lines: Sent<Vec<LineBody>>,
    #[serde(default)]
    pub ttl_ms: Sent<u64>,
    #[serde(default)]
    pub order: Sent<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub sku: Sent<String>,
    #[serde(default)]
    pub on_hand: Sent<u64>,
    #[serde(default)]
    pub expected_version: Sent<u64>,
    #[serde(default)]
    pub delta: Sent<i64>,
}

/// A batch op's field: whether the op names it at all (`null` included,
/// as the endpoint's body would have it), and its value if not `null`.
#[derive(Debug)]
pub struct Sent<T> {
    pub named: bool,
    pub value: Option<T>,
}

impl<T> Default for Sent<T> {
    fn default() -> Sent<T> {
        Sent { named: false, value: None }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sent<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Sent<T>, D::Error> {
        Ok(Sent { named: true, value: Option::<T>::deserialize(deserializer)? })
    }
}

impl BatchOp {
    /// The fields the op names (`null` or not), by name.
    pub fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("id", self.id.named),
            ("lines", self.lines.named),
            ("ttl_ms", self.ttl_ms.named),
            ("order", self.order.named),
            ("sku", self.sku.named),
            ("on_hand", self.on_hand.named),
            ("expected_version", self.expected_version.named),
            ("delta", self.delta.named),
        ]
        .into_iter()
        .filter_map(|(name, named)| named.then_some(name))
    }
}

/// `POST /v1/batch` as parsed: each op stays raw JSON until it is parsed
/// on its own (so one bad op cannot spoil the others), borrowed from the
/// request body (no copy, no `Value` tree).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch<'a> {
    #[serde(borrow)]
    pub ops: Vec<&'a serde_json::value::RawValue>,
}

/// The answer to a batch: one result per op, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResults {
    pub results: Vec<BatchResult>,
}

/// What the single endpoint would have answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub status: u16,
    #[schema(value_type = Object)]
    pub body: ResultBody,
    /// True when a reserve was answered from its first time (idempotent replay).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// The body a batch op's endpoint would have answered.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ResultBody {
    Sku(SkuBody),
    Reservation(ReservationBody),
    Decision(DecisionBody),
    Error(Box<ErrorBody>),
}
