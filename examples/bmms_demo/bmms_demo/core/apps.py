from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "bmms_demo.core"
    label = "core"
