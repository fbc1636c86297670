//! The controllers: `workflow` (QmsWorkflow) and `catalog` (WorkflowTemplate, QualityGate, Agent).

pub mod catalog;
pub mod workflow;
