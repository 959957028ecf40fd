//! Command and operation numbers of the 256-byte header (ref §7).

/// What a header is. Numbers 12, 21, 22 and 23 are retired and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Reserved = 0,
    Ping = 1,
    Pong = 2,
    PingClient = 3,
    PongClient = 4,
    Request = 5,
    Prepare = 6,
    PrepareOk = 7,
    Reply = 8,
    Commit = 9,
    ExitView = 10,
    JoinView = 11,
    GetView = 13,
    GetHeaders = 14,
    GetPrepare = 15,
    GetReply = 16,
    Headers = 17,
    Eviction = 18,
    GetBlocks = 19,
    Block = 20,
    View = 24,
}

impl Command {
    pub fn from_u8(value: u8) -> Option<Command> {
        use Command::*;
        Some(match value {
            0 => Reserved,
            1 => Ping,
            2 => Pong,
            3 => PingClient,
            4 => PongClient,
            5 => Request,
            6 => Prepare,
            7 => PrepareOk,
            8 => Reply,
            9 => Commit,
            10 => ExitView,
            11 => JoinView,
            13 => GetView,
            14 => GetHeaders,
            15 => GetPrepare,
            16 => GetReply,
            17 => Headers,
            18 => Eviction,
            19 => GetBlocks,
            20 => Block,
            24 => View,
            _ => return None,
        })
    }
}

/// The operation a prepare, request or reply carries. Numbers below 128 belong to the
/// replication protocol; the state machine owns 128 and above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Reserved,
    Root,
    Register,
    Reconfigure,
    Pulse,
    Upgrade,
    Noop,
    /// A prepare carrying several client requests (group commit; pinion's, not TigerBeetle's):
    /// see `replica::batch`.
    Batch,
    /// An operation of the state machine (≥ 128); which ones exist is the state machine's call.
    StateMachine(u8),
}

impl Operation {
    pub fn from_u8(value: u8) -> Option<Operation> {
        use Operation::*;
        Some(match value {
            0 => Reserved,
            1 => Root,
            2 => Register,
            3 => Reconfigure,
            4 => Pulse,
            5 => Upgrade,
            6 => Noop,
            7 => Batch,
            value if value >= crate::config::VSR_OPERATIONS_RESERVED => StateMachine(value),
            _ => return None,
        })
    }

    pub fn to_u8(self) -> u8 {
        use Operation::*;
        match self {
            Reserved => 0,
            Root => 1,
            Register => 2,
            Reconfigure => 3,
            Pulse => 4,
            Upgrade => 5,
            Noop => 6,
            Batch => 7,
            StateMachine(value) => {
                assert!(value >= crate::config::VSR_OPERATIONS_RESERVED);
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_numbers_round_trip_and_retired_ones_are_unknown() {
        for value in 0..=255u8 {
            match Command::from_u8(value) {
                Some(command) => assert_eq!(command as u8, value),
                None => assert!(matches!(value, 12 | 21..=23 | 25..=255)),
            }
        }
    }

    #[test]
    fn operation_numbers_round_trip() {
        for value in 0..=255u8 {
            match Operation::from_u8(value) {
                Some(operation) => assert_eq!(operation.to_u8(), value),
                None => assert!((8..128).contains(&value)),
            }
        }
    }
}
