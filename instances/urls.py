from django.urls import path

from instances import upgrade_views, views

app_name = "instances"

urlpatterns = [
    path("instances/", views.instance_list, name="list"),
    path("instances/new/", views.instance_provision_view, name="provision"),
    path("instances/<uuid:instance_id>/", views.instance_detail, name="detail"),
    path("instances/<uuid:instance_id>/status/", views.instance_status, name="status"),
    path("instances/<uuid:instance_id>/update/", views.instance_update_view, name="update"),
    path("instances/<uuid:instance_id>/retry/", views.instance_retry_view, name="retry"),
    path("instances/<uuid:instance_id>/refresh/", views.instance_refresh_view, name="refresh"),
    path("instances/<uuid:instance_id>/drift/adopt/", views.instance_drift_adopt_view, name="drift-adopt"),
    path("instances/<uuid:instance_id>/drift/reapply/", views.instance_drift_reapply_view, name="drift-reapply"),
    path("upgrades/", upgrade_views.upgrade_list, name="upgrades"),
    path("upgrades/<uuid:batch_id>/", upgrade_views.upgrade_batch_detail, name="upgrade-batch"),
    path("upgrades/<uuid:batch_id>/status/", upgrade_views.upgrade_batch_status, name="upgrade-batch-status"),
    path("upgrades/<uuid:batch_id>/resume/", upgrade_views.upgrade_batch_resume_view, name="upgrade-batch-resume"),
    path("upgrades/<uuid:batch_id>/cancel/", upgrade_views.upgrade_batch_cancel_view, name="upgrade-batch-cancel"),
    path("instances/<uuid:instance_id>/deprovision/", views.instance_deprovision_view, name="deprovision"),
    path("instances/<uuid:instance_id>/bindings/", views.binding_create_view, name="binding-create"),
    path("bindings/<uuid:binding_id>/credentials/", views.binding_credentials_view, name="binding-credentials"),
    path("bindings/<uuid:binding_id>/unbind/", views.binding_delete_view, name="binding-delete"),
    path("bindings/<uuid:binding_id>/rotate/", views.binding_rotate_view, name="binding-rotate"),
    path("operations/<uuid:operation_id>/cancel/", views.operation_cancel_view, name="operation-cancel"),
]
