from django.urls import path

from brokers import views

app_name = "brokers"

urlpatterns = [
    path("", views.marketplace, name="marketplace"),
    path("services/<uuid:service_id>/", views.service_detail, name="service-detail"),
    path("brokers/", views.broker_health, name="health"),
    path("brokers/<uuid:broker_id>/", views.broker_detail, name="detail"),
    path("brokers/<uuid:broker_id>/sync/", views.broker_sync, name="sync"),
]
