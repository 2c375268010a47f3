//! Container Credential Guard (gMSA) service requests: `HcsModifyServiceSettings` with a
//! `ModificationRequest{PropertyType:"ContainerCredentialGuard"}` adds or removes an instance;
//! `HcsGetServiceProperties` lists instances, whose state goes into the container document
//! (hcsshim `internal/credentials`).

use serde::{Deserialize, Serialize};

use super::{is_default, ContainerCredentialGuardState};

/// `ModificationRequest{PropertyType, Settings}` for the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceModificationRequest {
    /// `ContainerCredentialGuard`.
    pub property_type: String,
    /// The operation.
    pub settings: CcgOperationRequest,
}

/// `ContainerCredentialGuardOperationRequest{Operation, OperationDetails}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CcgOperationRequest {
    /// `AddInstance` or `RemoveInstance`.
    pub operation: String,
    /// `{Id, CredentialSpec, Transport}` or `{Id}`.
    pub operation_details: CcgInstanceRequest,
}

/// The details of an add or remove request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CcgInstanceRequest {
    /// The container id.
    pub id: String,
    /// The credential spec JSON (add only).
    #[serde(skip_serializing_if = "is_default")]
    pub credential_spec: String,
    /// `LRPC` (process isolation) or `HvSocket` (Hyper-V) (add only).
    #[serde(skip_serializing_if = "is_default")]
    pub transport: String,
}

impl ServiceModificationRequest {
    /// Adds a credential guard instance for container `id`.
    pub fn add_instance(id: &str, credential_spec: &str, transport: &str) -> Self {
        ServiceModificationRequest {
            property_type: "ContainerCredentialGuard".to_string(),
            settings: CcgOperationRequest {
                operation: "AddInstance".to_string(),
                operation_details: CcgInstanceRequest {
                    id: id.to_string(),
                    credential_spec: credential_spec.to_string(),
                    transport: transport.to_string(),
                },
            },
        }
    }

    /// Removes the instance of container `id`.
    pub fn remove_instance(id: &str) -> Self {
        ServiceModificationRequest {
            property_type: "ContainerCredentialGuard".to_string(),
            settings: CcgOperationRequest {
                operation: "RemoveInstance".to_string(),
                operation_details: CcgInstanceRequest { id: id.to_string(), ..CcgInstanceRequest::default() },
            },
        }
    }
}

/// `ServiceProperties{Properties[]}`: one raw document per property type asked for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceProperties {
    /// The answers.
    pub properties: Vec<serde_json::Value>,
}

/// `ContainerCredentialGuardSystemInfo{Instances}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CcgSystemInfo {
    /// The instances.
    pub instances: Vec<CcgInstance>,
}

/// `ContainerCredentialGuardInstance{Id, CredentialGuard}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CcgInstance {
    /// The container id.
    pub id: String,
    /// The state to put in the container document.
    pub credential_guard: Option<ContainerCredentialGuardState>,
}
