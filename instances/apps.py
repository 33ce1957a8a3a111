from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        # brokers may not import instances; it asks through brokers.hooks what only instances know.
        from brokers import hooks
        from instances.selectors import broker_calls_since, instance_counts_by_plan

        hooks.register(instance_counter=instance_counts_by_plan, call_source=broker_calls_since)
