from django.urls import path

from brokers import views

app_name = "brokers"

urlpatterns = [
    path("", views.marketplace, name="marketplace"),
    path("services/<uuid:service_id>/", views.service_detail, name="service-detail"),
]
