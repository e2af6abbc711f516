"""Simulated RocketMQ brokers that speak the real protocol: for tests, benches and demos."""
