from django.urls import path

from instances import apis

urlpatterns = [
    path("instances/", apis.InstanceListApi.as_view(), name="instance-list"),
    path("instances/<uuid:instance_id>/", apis.InstanceDetailApi.as_view(), name="instance-detail"),
    path("instances/<uuid:instance_id>/operations/", apis.InstanceOperationsApi.as_view(), name="instance-operations"),
    path("operations/", apis.OperationListApi.as_view(), name="operation-list"),
    path("operations/<uuid:operation_id>/", apis.OperationDetailApi.as_view(), name="operation-detail"),
]
