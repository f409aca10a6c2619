import { createRouter, createWebHistory } from 'vue-router'

export const routes = [
  { path: '/', name: 'search', component: () => import('./views/SearchView.vue') },
  { path: '/sketch', name: 'sketch', component: () => import('./views/SketchView.vue') },
  { path: '/admin', name: 'admin', component: () => import('./views/AdminView.vue') },
  { path: '/:rest(.*)*', redirect: '/' },
]

export function createAppRouter(history = createWebHistory()) {
  return createRouter({ history, routes })
}
