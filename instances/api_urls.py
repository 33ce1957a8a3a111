from django.urls import path

from instances import apis, upgrade_apis

urlpatterns = [
    path("instances/", apis.InstanceListApi.as_view(), name="instance-list"),
    path("instances/<uuid:instance_id>/", apis.InstanceDetailApi.as_view(), name="instance-detail"),
    path("instances/<uuid:instance_id>/retry/", apis.InstanceRetryApi.as_view(), name="instance-retry"),
    path("instances/<uuid:instance_id>/refresh/", apis.InstanceRefreshApi.as_view(), name="instance-refresh"),
    path("instances/<uuid:instance_id>/drift/adopt/", apis.InstanceDriftAdoptApi.as_view(),
         name="instance-drift-adopt"),
    path("instances/<uuid:instance_id>/drift/reapply/", apis.InstanceDriftReapplyApi.as_view(),
         name="instance-drift-reapply"),
    path("upgrades/", upgrade_apis.UpgradeListApi.as_view(), name="upgrade-list"),
    path("upgrades/<uuid:batch_id>/", upgrade_apis.UpgradeBatchApi.as_view(), name="upgrade-batch"),
    path("upgrades/<uuid:batch_id>/resume/", upgrade_apis.UpgradeBatchResumeApi.as_view(), name="upgrade-resume"),
    path("upgrades/<uuid:batch_id>/cancel/", upgrade_apis.UpgradeBatchCancelApi.as_view(), name="upgrade-cancel"),
    path("instances/<uuid:instance_id>/operations/", apis.InstanceOperationsApi.as_view(), name="instance-operations"),
    path("bindings/", apis.BindingListApi.as_view(), name="binding-list"),
    path("bindings/<uuid:binding_id>/", apis.BindingDetailApi.as_view(), name="binding-detail"),
    path("bindings/<uuid:binding_id>/credentials/", apis.BindingCredentialsApi.as_view(), name="binding-credentials"),
    path("bindings/<uuid:binding_id>/rotate/", apis.BindingRotateApi.as_view(), name="binding-rotate"),
    path("operations/", apis.OperationListApi.as_view(), name="operation-list"),
    path("operations/<uuid:operation_id>/", apis.OperationDetailApi.as_view(), name="operation-detail"),
    path("operations/<uuid:operation_id>/cancel/", apis.OperationCancelApi.as_view(), name="operation-cancel"),
]
