//! TEMPORARY stand-in for the `[gateways]` section until `gateway::GatewaysConfig` lands.
#![allow(missing_docs, unreachable_pub)]

use serde::Deserialize;

/// The `[gateways]` section (stand-in: accepts an empty table only).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaysConfig {}
