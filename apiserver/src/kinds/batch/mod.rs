//! The `batch/v1` kinds: jobs (a pod template that runs to completion, fixed
//! once created, in `job`) and cron jobs (a job template run on a cron
//! schedule, in `cronjob`).

mod cronjob;
mod job;

use k8s_openapi::api::batch::v1 as batch;

use self::cronjob::CronJobStrategy;
use self::job::JobStrategy;
use super::{ResourceType, Subresource};

/// The `batch` kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<batch::Job>()
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(JobStrategy),
        ResourceType::of::<batch::CronJob>()
            .short_names(&["cj"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(CronJobStrategy),
    ]
}
