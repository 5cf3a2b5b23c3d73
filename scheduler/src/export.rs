//! `schedule export --format eventbridge`: the schedules as EventBridge Scheduler
//! `CreateSchedule` inputs and a CloudFormation template, targeting either an ECS task that
//! runs the cryptolake container with the job's command, or the submission API through an
//! EventBridge API destination.

use serde_json::{Map, Value, json};

use crate::config::ScheduleSpec;
use crate::{Error, Result};

/// Where the schedules send their runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// ECS RunTask of the cryptolake container, command `run JOB ARGS...`.
    Ecs,
    /// An API destination that POSTs to `/v1/jobs/{job}/runs`.
    ApiDestination,
}

/// Exports `schedules` (disabled ones included, with `State: DISABLED`).
pub fn eventbridge(schedules: &[ScheduleSpec], target: Target) -> Result<Value> {
    let mut inputs = Vec::new();
    let mut resources = Map::new();
    for s in schedules {
        let expression = s.expression()?;
        if !expression.is_eventbridge() {
            return Err(Error::Expression(format!(
                "schedule {:?}: {} has no EventBridge equivalent",
                s.name, s.expression
            )));
        }
        let window = match s.flexible_window_minutes {
            0 => json!({ "Mode": "OFF" }),
            m => json!({ "Mode": "FLEXIBLE", "MaximumWindowInMinutes": m }),
        };
        let target = target_of(s, target);
        let state = if s.enabled { "ENABLED" } else { "DISABLED" };
        // CreateSchedule's input and the CloudFormation resource's properties are one shape.
        let schedule = json!({
            "Name": s.name,
            "GroupName": "cryptolake",
            "ScheduleExpression": s.expression,
            "ScheduleExpressionTimezone": s.timezone,
            "FlexibleTimeWindow": window,
            "State": state,
            "Target": target,
        });
        resources.insert(
            logical_id(&s.name),
            json!({ "Type": "AWS::Scheduler::Schedule", "Properties": schedule }),
        );
        inputs.push(schedule);
    }
    let parameters = match target {
        Target::Ecs => json!({
            "ClusterArn": { "Type": "String" },
            "TaskDefinitionArn": { "Type": "String" },
            "SchedulerRoleArn": { "Type": "String" },
            "Subnets": { "Type": "List<AWS::EC2::Subnet::Id>" },
        }),
        Target::ApiDestination => json!({
            "ApiDestinationArn": { "Type": "String" },
            "SchedulerRoleArn": { "Type": "String" },
        }),
    };
    Ok(json!({
        "schedules": inputs,
        "cloudformation": {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "cryptolake schedules (cryptolake schedule export)",
            "Parameters": parameters,
            "Resources": resources,
        }
    }))
}

fn target_of(s: &ScheduleSpec, target: Target) -> Value {
    let retry = json!({ "MaximumRetryAttempts": s.max_retries, "MaximumEventAgeInSeconds": 3600 });
    match target {
        Target::Ecs => {
            let mut command = vec!["run".to_string(), s.job.clone()];
            command.extend(s.args.iter().cloned());
            let input = json!({
                "containerOverrides": [{ "name": "cryptolake", "command": command }]
            });
            json!({
                "Arn": { "Ref": "ClusterArn" },
                "RoleArn": { "Ref": "SchedulerRoleArn" },
                "RetryPolicy": retry,
                "EcsParameters": {
                    "TaskDefinitionArn": { "Ref": "TaskDefinitionArn" },
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": {
                        "AwsvpcConfiguration": { "Subnets": { "Ref": "Subnets" } }
                    }
                },
                "Input": input.to_string(),
            })
        }
        Target::ApiDestination => json!({
            "Arn": { "Ref": "ApiDestinationArn" },
            "RoleArn": { "Ref": "SchedulerRoleArn" },
            "RetryPolicy": retry,
            "HttpParameters": { "PathParameterValues": [s.job] },
            "Input": json!({ "args": s.args }).to_string(),
        }),
    }
}

/// CloudFormation logical ids are alphanumeric.
fn logical_id(name: &str) -> String {
    let camel: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            cs.next()
                .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{camel}Schedule")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_and_api_destination_targets() {
        let mut weekly = ScheduleSpec::new("weekly-maintenance", "maintain", "cron(0 3 ? * SUN *)");
        weekly.args = vec!["--older-than".into(), "7d".into()];
        let out = eventbridge(&[weekly.clone()], Target::Ecs).unwrap();
        let s = &out["schedules"][0];
        assert_eq!(s["ScheduleExpression"], "cron(0 3 ? * SUN *)");
        assert_eq!(s["FlexibleTimeWindow"]["Mode"], "OFF");
        let input: Value = serde_json::from_str(s["Target"]["Input"].as_str().unwrap()).unwrap();
        assert_eq!(
            input["containerOverrides"][0]["command"],
            json!(["run", "maintain", "--older-than", "7d"])
        );
        assert_eq!(
            out["cloudformation"]["Resources"]["WeeklyMaintenanceSchedule"]["Type"],
            "AWS::Scheduler::Schedule"
        );
        let api = eventbridge(&[weekly.clone()], Target::ApiDestination).unwrap();
        assert_eq!(
            api["schedules"][0]["Target"]["HttpParameters"]["PathParameterValues"],
            json!(["maintain"])
        );
        let fast = ScheduleSpec::new("fast", "silver", "rate(10 seconds)");
        assert!(eventbridge(&[fast], Target::Ecs).is_err());
    }
}
