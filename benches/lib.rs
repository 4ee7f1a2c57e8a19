//! Inputs shared by sluice's benchmarks: realistic manager traffic, built once.

/// The metric paths of 10 Diamond collectors, as the manager's agents report them.
pub const DIAMOND_PATHS: [&str; 10] = [
    "cpu.total.user",
    "cpu.total.system",
    "cpu.total.idle",
    "memory.MemFree",
    "memory.Buffers",
    "loadavg.01",
    "loadavg.05",
    "diskspace.root.byte_free",
    "network.eth0.rx_byte",
    "network.eth0.tx_byte",
];

/// `count` Diamond metric bodies as the manager's agents publish them: 10 collectors' paths
/// ([`DIAMOND_PATHS`]) over hosts of two deployments, one with dots in its id.
pub fn diamond_bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| {
            let deployment = if index % 2 == 0 {
                "nodecellar"
            } else {
                "shop.prod.eu"
            };
            let node_id = format!("nodejs_host_{:05x}", index % 200);
            let path = DIAMOND_PATHS[index % DIAMOND_PATHS.len()];
            let (collector, rest) = path.split_once('.').unwrap_or((path, ""));
            serde_json::json!({
                "node_id": node_id,
                "node_name": "nodejs_host",
                "deployment_id": deployment,
                "name": collector,
                "path": rest.replace('.', "_"),
                "metric": (index as f64) * 1.25,
                "unit": "",
                "type": "GAUGE",
                "host": node_id,
                "service": format!("{deployment}.nodejs_host.{node_id}.{path}"),
                "time": 1_466_000_000 + index as i64,
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// `count` Cloudify event and log bodies as the 3.4 manager publishes them: task events and
/// operation logs in turn, each distinct (so each is its own document), with timestamps in the
/// manager's `+0000` shape spread over two days.
pub fn cloudify_event_bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| {
            let seconds = index % 86_400 * 2;
            let timestamp = format!(
                "2016-06-{:02} {:02}:{:02}:{:02}.{:03}+0000",
                15 + seconds / 86_400,
                seconds / 3600 % 24,
                seconds / 60 % 60,
                seconds % 60,
                index % 1000
            );
            let context = serde_json::json!({
                "blueprint_id": "nodecellar", "deployment_id": "nodecellar",
                "execution_id": format!("exec-{}", index / 1000), "workflow_id": "install",
                "task_id": format!("task-{index}"), "task_name": "script_runner.tasks.run",
                "operation": "cloudify.interfaces.lifecycle.start", "plugin": "script",
                "node_id": format!("nodejs_{:05x}", index % 200), "node_name": "nodejs",
                "task_current_retries": 0, "task_total_retries": -1,
            });
            let body = if index % 2 == 0 {
                serde_json::json!({
                    "event_type": "task_succeeded", "type": "cloudify_event", "message_code": null,
                    "timestamp": timestamp, "context": context,
                    "message": {"text": format!("Task succeeded 'script_runner.tasks.run' ({index})"), "arguments": null},
                })
            } else {
                serde_json::json!({
                    "logger": "ctx.a9f0b1", "level": "info", "type": "cloudify_log", "message_code": null,
                    "timestamp": timestamp, "context": context,
                    "message": {"text": format!("Starting nodejs on port {}", 8000 + index % 1000)},
                })
            };
            body.to_string().into_bytes()
        })
        .collect()
}
