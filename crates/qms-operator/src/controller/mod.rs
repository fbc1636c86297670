//! The controllers: `workflow` (QmsWorkflow), `catalog` (WorkflowTemplate, QualityGate, Agent) and,
//! with GitHub on, `github` (QmsWorkflow → Check Runs).

pub mod catalog;
pub mod github;
pub mod workflow;
