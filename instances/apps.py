from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        # brokers may not import instances; it asks through brokers.hooks what only instances know.
        from brokers import hooks
        from instances.selectors import broker_calls_since, instance_counts_by_plan

        hooks.register(instance_counter=instance_counts_by_plan, call_source=broker_calls_since)
        # teams may not import instances either: a team is not deleted while its namespaces hold live instances.
        from instances.selectors import live_instance_names
        from teams import hooks as team_hooks

        team_hooks.register(live_instances=live_instance_names)
