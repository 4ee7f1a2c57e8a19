//! sluice's push inputs, made durable by the broker's publisher confirms (in progress).
