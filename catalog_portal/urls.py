from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalog_portal import views
from catalog_portal.forms import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm

admin.site.site_header = "Catalog Portal administration"
admin.site.site_title = "Catalog Portal admin"
admin.site.login_form = ThrottledAdminAuthenticationForm  # the sign-in lock-out covers /admin/login/ too

api_v1 = [
    path("", include("teams.api_urls")),
    path("", include("brokers.api_urls")),
    path("", include("instances.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("login/", login_not_required(auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm)),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("teams.urls")),
    # Browsers ask for /favicon.ico on every site, whatever the pages link: the portal's logo.
    path("favicon.ico", login_not_required(views.favicon), name="favicon"),
    # Teams and the audit log moved from the catalog_portal app to teams: old admin bookmarks still work.
    re_path(r"^admin/catalog_portal/(?P<rest>.*)$",
            RedirectView.as_view(url="/admin/teams/%(rest)s", permanent=True, query_string=True)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("instances.urls")),
    path("", include("brokers.urls")),
]

handler400 = "catalog_portal.views.bad_request"
handler403 = "teams.views.permission_denied"
handler404 = "catalog_portal.views.not_found"
handler500 = "catalog_portal.views.server_error"
