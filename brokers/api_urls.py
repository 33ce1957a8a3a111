from django.urls import path

from brokers import apis

urlpatterns = [
    path("brokers/", apis.BrokerListApi.as_view(), name="broker-list"),
    path("brokers/<uuid:broker_id>/", apis.BrokerDetailApi.as_view(), name="broker-detail"),
    path("brokers/<uuid:broker_id>/sync/", apis.BrokerSyncApi.as_view(), name="broker-sync"),
    path("brokers/<uuid:broker_id>/syncs/", apis.BrokerSyncListApi.as_view(), name="broker-sync-list"),
    path("brokers/<uuid:broker_id>/syncs/<uuid:sync_id>/", apis.BrokerSyncDetailApi.as_view(),
         name="broker-sync-detail"),
    path("brokers/<uuid:broker_id>/conformance/", apis.BrokerConformanceApi.as_view(), name="broker-conformance"),
    path("services/", apis.ServiceListApi.as_view(), name="service-list"),
    path("services/<uuid:service_id>/", apis.ServiceDetailApi.as_view(), name="service-detail"),
    path("plans/", apis.PlanListApi.as_view(), name="plan-list"),
    path("plans/<uuid:plan_id>/", apis.PlanDetailApi.as_view(), name="plan-detail"),
]
