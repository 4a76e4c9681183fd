//! Link termini: source, target and the transaction coordinator
//! (spec 3.5 and 4.5.1), with the filters JMS clients put on a source.

use super::composite::{descriptor_code, open_composite, FieldReader, FieldWriter, Fields};
use super::delivery_state::DeliveryState;
use super::error::CodecError;
use super::value::{Map, Symbol, Value};

const SOURCE: u64 = 0x28;
const TARGET: u64 = 0x29;
const COORDINATOR: u64 = 0x30;

/// The descriptor of a JMS selector filter (Apache's registered code).
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;
pub const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";
/// The descriptor of JMS's no-local filter.
pub const NO_LOCAL_FILTER_CODE: u64 = 0x0000_468C_0000_0003;
pub const NO_LOCAL_FILTER_NAME: &str = "apache.org:no-local-filter:list";

/// What survives the end of the link or session (spec 3.5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TerminusDurability {
    #[default]
    None,
    Configuration,
    UnsettledState,
}

impl TerminusDurability {
    fn from_u32(v: u32) -> Option<TerminusDurability> {
        match v {
            0 => Some(TerminusDurability::None),
            1 => Some(TerminusDurability::Configuration),
            2 => Some(TerminusDurability::UnsettledState),
            _ => None,
        }
    }
    fn as_u32(self) -> u32 {
        match self {
            TerminusDurability::None => 0,
            TerminusDurability::Configuration => 1,
            TerminusDurability::UnsettledState => 2,
        }
    }
}

/// When the expiry timer of a terminus starts (spec 3.5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpiryPolicy {
    LinkDetach,
    #[default]
    SessionEnd,
    ConnectionClose,
    Never,
}

impl ExpiryPolicy {
    fn from_symbol(s: &Symbol) -> Option<ExpiryPolicy> {
        match s.as_str() {
            "link-detach" => Some(ExpiryPolicy::LinkDetach),
            "session-end" => Some(ExpiryPolicy::SessionEnd),
            "connection-close" => Some(ExpiryPolicy::ConnectionClose),
            "never" => Some(ExpiryPolicy::Never),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            ExpiryPolicy::LinkDetach => "link-detach",
            ExpiryPolicy::SessionEnd => "session-end",
            ExpiryPolicy::ConnectionClose => "connection-close",
            ExpiryPolicy::Never => "never",
        }
    }
}

/// The fields source and target share.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Terminus {
    pub address: Option<String>,
    pub durable: TerminusDurability,
    pub expiry_policy: ExpiryPolicy,
    /// Seconds.
    pub timeout: u32,
    pub dynamic: bool,
    pub dynamic_node_properties: Option<Map>,
    pub capabilities: Vec<Symbol>,
}

/// Where messages come from (spec 3.5.3).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Source {
    pub terminus: Terminus,
    /// `move` (queue semantics) or `copy` (browse / topic semantics).
    pub distribution_mode: Option<Symbol>,
    /// Filter-set: names (symbols) to filters, usually described values
    /// such as a selector; kept as sent.
    pub filter: Option<Map>,
    pub default_outcome: Option<DeliveryState>,
    pub outcomes: Vec<Symbol>,
}

/// Where messages go (spec 3.5.4).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Target {
    pub terminus: Terminus,
}

/// The target of a transaction controller's link (spec 4.5.1).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Coordinator {
    /// Transaction capabilities, e.g. `amqp:local-transactions`.
    pub capabilities: Vec<Symbol>,
}

/// What an attach names as its target.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachTarget {
    Target(Target),
    Coordinator(Coordinator),
}

impl Terminus {
    fn read_head(f: &mut FieldReader<'_, '_>) -> Result<Terminus, CodecError> {
        let address = match f.value()? {
            Value::Null => None,
            Value::String(s) => Some(s),
            // Some clients send addresses as symbols; read them the same.
            Value::Symbol(s) => Some(s.as_str().to_owned()),
            _ => {
                return Err(CodecError::InvalidField {
                    type_name: "terminus",
                    field: "address",
                })
            }
        };
        let durable = match f.opt_u32("durable")? {
            None => TerminusDurability::None,
            Some(v) => TerminusDurability::from_u32(v).ok_or(CodecError::InvalidField {
                type_name: "terminus",
                field: "durable",
            })?,
        };
        let expiry_policy = match f.opt_symbol("expiry-policy")? {
            None => ExpiryPolicy::SessionEnd,
            Some(s) => ExpiryPolicy::from_symbol(&s).ok_or(CodecError::InvalidField {
                type_name: "terminus",
                field: "expiry-policy",
            })?,
        };
        Ok(Terminus {
            address,
            durable,
            expiry_policy,
            timeout: f.opt_u32("timeout")?.unwrap_or(0),
            dynamic: f.bool_or("dynamic", false)?,
            dynamic_node_properties: f.opt_map("dynamic-node-properties")?,
            capabilities: Vec::new(),
        })
    }

    fn write_head(&self, f: &mut FieldWriter) {
        f.opt(self.address.clone())
            .unless_default(self.durable.as_u32(), 0)
            .opt(
                (self.expiry_policy != ExpiryPolicy::SessionEnd)
                    .then(|| Value::symbol(self.expiry_policy.as_str())),
            )
            .unless_default(self.timeout, 0)
            .unless_default(self.dynamic, false)
            .opt(self.dynamic_node_properties.clone());
    }
}

impl Source {
    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        self.terminus.write_head(&mut f);
        f.opt(self.distribution_mode.clone())
            .opt(self.filter.clone())
            .opt(self.default_outcome.as_ref().map(DeliveryState::to_value))
            .symbols(&self.outcomes)
            .symbols(&self.terminus.capabilities)
            .finish(SOURCE)
    }

    pub fn from_value(v: Value) -> Result<Source, CodecError> {
        let mut f = open_composite(v, SOURCE, "amqp:source:list", "source")?;
        let mut terminus = Terminus::read_head(&mut f)?;
        let distribution_mode = f.opt_symbol("distribution-mode")?;
        let filter = f.opt_map("filter")?;
        let default_outcome = f.opt()?.map(DeliveryState::from_value).transpose()?;
        let outcomes = f.symbols("outcomes")?;
        terminus.capabilities = f.symbols("capabilities")?;
        Ok(Source {
            terminus,
            distribution_mode,
            filter,
            default_outcome,
            outcomes,
        })
    }

    /// The described filter with descriptor `code` or `name`, if any.
    pub fn filter_value(&self, code: u64, name: &str) -> Option<&Value> {
        self.filter
            .iter()
            .flatten()
            .map(|(_, v)| v)
            .find(|v| v.has_descriptor(code, name))
    }

    /// The JMS selector of an `apache.org:selector-filter:string` filter.
    pub fn selector(&self) -> Option<&str> {
        self.filter_value(SELECTOR_FILTER_CODE, SELECTOR_FILTER_NAME)
            .and_then(Value::as_described)
            .and_then(|d| d.value.as_str())
    }

    /// Whether a no-local filter is present.
    pub fn no_local(&self) -> bool {
        self.filter_value(NO_LOCAL_FILTER_CODE, NO_LOCAL_FILTER_NAME)
            .is_some()
    }
}

impl AttachTarget {
    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        match self {
            AttachTarget::Target(t) => {
                t.terminus.write_head(&mut f);
                f.symbols(&t.terminus.capabilities).finish(TARGET)
            }
            AttachTarget::Coordinator(c) => f.symbols(&c.capabilities).finish(COORDINATOR),
        }
    }

    pub fn from_value(v: Value) -> Result<AttachTarget, CodecError> {
        let names = [
            (TARGET, "amqp:target:list"),
            (COORDINATOR, "amqp:coordinator:list"),
        ];
        let code = v
            .as_described()
            .and_then(|d| descriptor_code(&d.descriptor, &names));
        match code {
            Some(TARGET) => {
                let mut f = open_composite(v, TARGET, names[0].1, "target")?;
                let mut terminus = Terminus::read_head(&mut f)?;
                terminus.capabilities = f.symbols("capabilities")?;
                Ok(AttachTarget::Target(Target { terminus }))
            }
            Some(COORDINATOR) => {
                let mut f = open_composite(v, COORDINATOR, names[1].1, "coordinator")?;
                Ok(AttachTarget::Coordinator(Coordinator {
                    capabilities: f.symbols("capabilities")?,
                }))
            }
            _ => Err(CodecError::UnexpectedType {
                expected: "target or coordinator",
            }),
        }
    }

    /// The target's address (a coordinator has none).
    pub fn address(&self) -> Option<&str> {
        match self {
            AttachTarget::Target(t) => t.terminus.address.as_deref(),
            AttachTarget::Coordinator(_) => None,
        }
    }
}
