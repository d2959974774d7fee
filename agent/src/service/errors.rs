//! Domain errors and refusals become gRPC statuses here, and only here: the domain and the
//! policy ([`crate::authz`]) know nothing of the transport.

use tonic::Status;

use crate::authz::Refusal;
use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::InvalidInput { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::Conflict(_) => Status::failed_precondition(e.to_string()),
            Error::Io { .. } | Error::Internal(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Hidden(name) => Error::NotFound(name).into(),
            Refusal::MayNotDeployFor { caller, owner } => {
                Status::permission_denied(format!("{caller} may not deploy for {owner}"))
            }
            Refusal::NameTaken { name, caller } => Status::permission_denied(format!(
                "the name {name:?} is not available to {caller}; choose another name"
            )),
            Refusal::MayNotManageSecrets { caller, owner } => {
                Status::permission_denied(format!("{caller} may not manage the secrets of {owner}"))
            }
        }
    }
}
